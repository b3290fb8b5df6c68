//! rds-sim's answers to RouterOS questions that public material leaves open
//! (`../shared/routeros/REFERENCE.md` §13), one switch each, so that the driver is tested against
//! every answer and not one guess (FIDELITY.md, "Open questions: switches"). Each switch has a
//! name, positions and a default, and is set with `--quirk NAME=POSITION` or the control API's
//! `POST /config/quirk`.

use std::fmt;

/// §13 item 7: what `print` shows when nothing matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EmptyPrint {
    /// Nothing at all: SC's captures show a legend limited to the printed items.
    #[default]
    Nothing,
    /// The menu's whole `Flags:` legend and no item, as GO reports.
    Legend,
}

/// §13 item 10: whether `/disk set … file-size=` grows an existing file disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Grow {
    /// The file grows (the roadmap's assumption; routeros/README.md assumption 5).
    #[default]
    Grows,
    /// Refused with a failure. No public text exists for it: rds-sim's is its own.
    Refused,
}

/// §13 item 6: what `remove [find …]` does when the find matches nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoveMissing {
    /// Nothing, silently: removing an empty list ([inf]).
    #[default]
    Silent,
    /// `no such item`, as `remove <name>` of a missing item says.
    NoSuchItem,
}

/// §13 item 11: whether a disk that is exported over NVMe/TCP can be removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoveExported {
    /// Removed, its connections torn down ([choice]).
    #[default]
    Allowed,
    /// Refused with a failure until the export is ended. No public text: rds-sim's is its own.
    Refused,
}

/// §13 item 4: whether two disks may carry the same `nvme-tcp-server-nqn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DuplicateNqn {
    /// Allowed; the target serves the first disk in list order ([choice]: no evidence either
    /// way).
    #[default]
    Allowed,
    /// Refused when another disk has it. No public text: rds-sim's is its own.
    Refused,
}

/// §13 item 14: the longest slot name `/disk add` takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlotLength {
    /// 32 characters, as SC states (unverified against an error).
    #[default]
    Max32,
    /// No limit rds-sim enforces.
    Unlimited,
}

/// §13 item 2: the `nvme-tcp-server-nqn` a disk gets when `/disk add` gives none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultNqn {
    /// The slot name ([doc] §6.1).
    #[default]
    Slot,
    /// Nothing: the property prints empty.
    Empty,
}

/// §13 item 8: which stream of an exec channel an error's text goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorStream {
    /// Standard output, as the console prints it (TIK: exec behaves like the terminal).
    #[default]
    Stdout,
    /// Standard error (SSH extended data).
    Stderr,
}

/// §13 item 12: whether a new file disk's `file-size` is taken from the pool's free space at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allocation {
    /// Sparse: only blocks really written count (GO's unverified doc: "Allocates sparse file").
    #[default]
    Sparse,
    /// Preallocated: every file disk's whole `file-size` counts against `free` from its `add`.
    /// Modelled in the figures only: the backing files stay sparse on the host.
    Preallocated,
}

/// §13 item 3: how `nvme-tcp-server-allow-host-name` is read when a host connects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllowList {
    /// One host name or several separated by commas (README assumption 3, on which live
    /// migration's two-host list rests).
    #[default]
    List,
    /// One host name, the whole value: a value holding a comma admits no host.
    Single,
}

/// §13 item 5: the texts `/disk add` refuses with (duplicate slot, a file in use or already
/// there, no free space, a slot too long, …), none of them published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddErrors {
    /// rds-sim's texts: RouterOS's generic ones where they exist, GO's and SC's otherwise
    /// (FIDELITY.md, the `/disk` model).
    #[default]
    Known,
    /// Every `failure: …` of `/disk add` is [`ADD_REFUSED`], which names no cause, as a wording
    /// no one has seen would.
    Opaque,
}

/// What every refused `/disk add` prints in the [`AddErrors::Opaque`] position (invented).
pub const ADD_REFUSED: &str = "failure: could not add disk";

/// The refusal rds-sim prints for [`DuplicateNqn::Refused`] (invented).
pub const DUPLICATE_NQN_REFUSED: &str =
    "failure: nvme-tcp-server-nqn is already used by another disk";

/// The refusal rds-sim prints for [`RemoveExported::Refused`] (invented).
pub const REMOVE_EXPORTED_REFUSED: &str =
    "failure: can not remove disk while it is exported, set nvme-tcp-export=no first";

/// The refusal rds-sim prints for [`Grow::Refused`] (invented: RouterOS's text is unknown).
pub const GROW_REFUSED: &str = "failure: can not change file-size of existing disk";

/// Every switch's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    pub empty_print: EmptyPrint,
    pub grow: Grow,
    pub remove_missing: RemoveMissing,
    pub remove_exported: RemoveExported,
    pub duplicate_nqn: DuplicateNqn,
    pub slot_length: SlotLength,
    pub default_nqn: DefaultNqn,
    pub error_stream: ErrorStream,
    pub allocation: Allocation,
    pub allow_list: AllowList,
    pub add_errors: AddErrors,
}

/// A switch's positions as an enum.
trait Position: Copy + PartialEq + 'static {
    /// Every position, the default first, and their names in the same order.
    const ALL: &'static [Self];
    const NAMES: &'static [&'static str];

    fn name(self) -> &'static str {
        let index = Self::ALL.iter().position(|p| *p == self);
        Self::NAMES[index.expect("ALL lists every position")]
    }

    fn parse(text: &str) -> Option<Self> {
        let index = Self::NAMES.iter().position(|name| *name == text)?;
        Some(Self::ALL[index])
    }
}

impl Position for EmptyPrint {
    const ALL: &'static [Self] = &[EmptyPrint::Nothing, EmptyPrint::Legend];
    const NAMES: &'static [&'static str] = &["nothing", "legend"];
}

impl Position for Grow {
    const ALL: &'static [Self] = &[Grow::Grows, Grow::Refused];
    const NAMES: &'static [&'static str] = &["grows", "refused"];
}

impl Position for RemoveMissing {
    const ALL: &'static [Self] = &[RemoveMissing::Silent, RemoveMissing::NoSuchItem];
    const NAMES: &'static [&'static str] = &["silent", "no-such-item"];
}

impl Position for RemoveExported {
    const ALL: &'static [Self] = &[RemoveExported::Allowed, RemoveExported::Refused];
    const NAMES: &'static [&'static str] = &["allowed", "refused"];
}

impl Position for DuplicateNqn {
    const ALL: &'static [Self] = &[DuplicateNqn::Allowed, DuplicateNqn::Refused];
    const NAMES: &'static [&'static str] = &["allowed", "refused"];
}

impl Position for SlotLength {
    const ALL: &'static [Self] = &[SlotLength::Max32, SlotLength::Unlimited];
    const NAMES: &'static [&'static str] = &["32", "unlimited"];
}

impl Position for DefaultNqn {
    const ALL: &'static [Self] = &[DefaultNqn::Slot, DefaultNqn::Empty];
    const NAMES: &'static [&'static str] = &["slot", "empty"];
}

impl Position for ErrorStream {
    const ALL: &'static [Self] = &[ErrorStream::Stdout, ErrorStream::Stderr];
    const NAMES: &'static [&'static str] = &["stdout", "stderr"];
}

impl Position for Allocation {
    const ALL: &'static [Self] = &[Allocation::Sparse, Allocation::Preallocated];
    const NAMES: &'static [&'static str] = &["sparse", "preallocated"];
}

impl Position for AllowList {
    const ALL: &'static [Self] = &[AllowList::List, AllowList::Single];
    const NAMES: &'static [&'static str] = &["list", "single"];
}

impl Position for AddErrors {
    const ALL: &'static [Self] = &[AddErrors::Known, AddErrors::Opaque];
    const NAMES: &'static [&'static str] = &["known", "opaque"];
}

/// One switch: its name, its positions (the default first) and the §13 item it answers.
pub struct Switch {
    pub name: &'static str,
    pub positions: &'static [&'static str],
    pub item: u8,
    /// Whether `rds-csi doctor --all` can tell the position over SSH alone.
    pub over_ssh: bool,
}

/// Every switch, for `--help`, the control API and the docs.
pub const SWITCHES: &[Switch] = &[
    Switch {
        name: "empty-print",
        positions: EmptyPrint::NAMES,
        item: 7,
        over_ssh: true,
    },
    Switch {
        name: "grow",
        positions: Grow::NAMES,
        item: 10,
        over_ssh: true,
    },
    Switch {
        name: "remove-missing",
        positions: RemoveMissing::NAMES,
        item: 6,
        over_ssh: true,
    },
    Switch {
        name: "remove-exported",
        positions: RemoveExported::NAMES,
        item: 11,
        over_ssh: true,
    },
    Switch {
        name: "duplicate-nqn",
        positions: DuplicateNqn::NAMES,
        item: 4,
        over_ssh: true,
    },
    Switch {
        name: "slot-length",
        positions: SlotLength::NAMES,
        item: 14,
        over_ssh: true,
    },
    Switch {
        name: "default-nqn",
        positions: DefaultNqn::NAMES,
        item: 2,
        over_ssh: true,
    },
    Switch {
        name: "error-stream",
        positions: ErrorStream::NAMES,
        item: 8,
        over_ssh: true,
    },
    Switch {
        name: "allocation",
        positions: Allocation::NAMES,
        item: 12,
        over_ssh: true,
    },
    Switch {
        name: "allow-list",
        positions: AllowList::NAMES,
        item: 3,
        over_ssh: false,
    },
    Switch {
        name: "add-errors",
        positions: AddErrors::NAMES,
        item: 5,
        over_ssh: true,
    },
];

impl Quirks {
    /// Sets switch `name` to `position`; the error names what is accepted.
    pub fn set(&mut self, name: &str, position: &str) -> Result<(), String> {
        fn assign<P: Position>(switch: &mut P, name: &str, position: &str) -> Result<(), String> {
            *switch = P::parse(position).ok_or_else(|| {
                format!(
                    "quirk {name} has no position {position:?}; use one of {}",
                    P::NAMES.join(", ")
                )
            })?;
            Ok(())
        }
        match name {
            "empty-print" => assign(&mut self.empty_print, name, position),
            "grow" => assign(&mut self.grow, name, position),
            "remove-missing" => assign(&mut self.remove_missing, name, position),
            "remove-exported" => assign(&mut self.remove_exported, name, position),
            "duplicate-nqn" => assign(&mut self.duplicate_nqn, name, position),
            "slot-length" => assign(&mut self.slot_length, name, position),
            "default-nqn" => assign(&mut self.default_nqn, name, position),
            "error-stream" => assign(&mut self.error_stream, name, position),
            "allocation" => assign(&mut self.allocation, name, position),
            "allow-list" => assign(&mut self.allow_list, name, position),
            "add-errors" => assign(&mut self.add_errors, name, position),
            _ => {
                let names: Vec<_> = SWITCHES.iter().map(|s| s.name).collect();
                Err(format!(
                    "no quirk named {name:?}; there are {}",
                    names.join(", ")
                ))
            }
        }
    }

    /// `NAME=POSITION`, as `--quirk` takes it.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), String> {
        let (name, position) = pair
            .split_once('=')
            .ok_or_else(|| format!("--quirk takes NAME=POSITION, not {pair:?}"))?;
        self.set(name.trim(), position.trim())
    }
}

impl fmt::Display for Quirks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let positions = [
            self.empty_print.name(),
            self.grow.name(),
            self.remove_missing.name(),
            self.remove_exported.name(),
            self.duplicate_nqn.name(),
            self.slot_length.name(),
            self.default_nqn.name(),
            self.error_stream.name(),
            self.allocation.name(),
            self.allow_list.name(),
            self.add_errors.name(),
        ];
        let pairs: Vec<String> = SWITCHES
            .iter()
            .zip(positions)
            .map(|(switch, position)| format!("{}={position}", switch.name))
            .collect();
        f.write_str(&pairs.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_position_of_every_switch_can_be_set_and_shows() {
        for switch in SWITCHES {
            for position in switch.positions {
                let mut quirks = Quirks::default();
                quirks.set(switch.name, position).unwrap();
                assert!(
                    quirks
                        .to_string()
                        .contains(&format!("{}={position}", switch.name)),
                    "{quirks}"
                );
            }
            let default = Quirks::default().to_string();
            assert!(default.contains(&format!("{}={}", switch.name, switch.positions[0])));
        }
    }

    #[test]
    fn unknown_names_and_positions_are_refused_naming_what_is_accepted() {
        let mut quirks = Quirks::default();
        let error = quirks.set("grow", "shrinks").unwrap_err();
        assert!(error.contains("grows, refused"), "{error}");
        let error = quirks.set_pair("nope=1").unwrap_err();
        assert!(
            error.contains("empty-print, grow, remove-missing, remove-exported"),
            "{error}"
        );
        assert!(quirks.set_pair("grow").is_err());
        quirks.set_pair(" grow = refused ").unwrap();
        assert_eq!(quirks.grow, Grow::Refused);
    }
}
