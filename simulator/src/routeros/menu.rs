//! The menu tree rds-sim knows: which paths, verbs, parameters and properties exist, with their types.
//! The parser resolves every word against this table, so an unknown word fails the way RouterOS
//! fails and nothing is ever silently ignored.

/// How an argument's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// Free text.
    Str,
    /// `yes`/`no` (and `true`/`false`).
    Bool,
    /// A byte count: digits with an optional binary suffix `K`, `M`, `G`, `T`.
    Size,
    /// A plain unsigned number.
    Num,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// One or more items: `[find …]`, `*HEX`, or an item's name.
    Items,
    /// A path in the `/file` tree.
    Path,
    /// A comma-separated list of property names.
    Names,
}

/// Named parameters and how each is read.
pub type Params = &'static [(&'static str, ArgType)];

/// One command of a menu.
#[derive(Debug)]
pub struct Verb {
    pub name: &'static str,
    /// Named parameters (`name=value`), in groups so menus can share a group.
    pub params: &'static [Params],
    /// Bare words that switch something on (`detail`, `once`).
    pub switches: &'static [&'static str],
    /// The unnamed parameters the verb takes, in order (`get <item> <value-name>` takes two).
    pub unnamed: &'static [ArgType],
    /// Whether `where <expr>` may end the command.
    pub filter: bool,
}

/// One menu: its sub-menus and its verbs.
#[derive(Debug)]
pub struct Menu {
    /// The absolute path, words separated by `/`, without the leading `/` (root is "").
    pub path: &'static str,
    pub verbs: &'static [Verb],
    /// Verbs RouterOS has here that rds-sim does not model: they fail with a clear `failure:`.
    pub unmodeled: &'static [&'static str],
}

pub const DISK_TYPES: &[&str] = &[
    "raid",
    "nvme-tcp",
    "iscsi",
    "nfs",
    "smb",
    "partition",
    "tmpfs",
    "ramdisk",
    "crypted",
    "sshfs",
    "file",
    "hardware",
];

const PRINT_SWITCHES: &[&str] = &[
    "detail",
    "terse",
    "brief",
    "as-value",
    "count-only",
    "without-paging",
];

const DISK_SETTABLE: &[(&str, ArgType)] = &[
    ("slot", ArgType::Str),
    ("file-size", ArgType::Size),
    ("mount-filesystem", ArgType::Bool),
    ("mount-read-only", ArgType::Bool),
    ("compress", ArgType::Bool),
    ("nvme-tcp-export", ArgType::Bool),
    ("nvme-tcp-server-port", ArgType::Num),
    ("nvme-tcp-server-nqn", ArgType::Str),
    ("nvme-tcp-server-allow-host-name", ArgType::Str),
    ("comment", ArgType::Str),
];

/// What `/disk add` takes beyond what `/disk set` can change.
const DISK_ADD_ONLY: &[(&str, ArgType)] = &[
    ("type", ArgType::Enum(DISK_TYPES)),
    ("file-path", ArgType::Path),
    ("file-offset", ArgType::Num),
    ("copy-from", ArgType::Items),
];

const PRINT_PARAMS: &[(&str, ArgType)] = &[("proplist", ArgType::Names)];

const fn print_verb() -> Verb {
    Verb {
        name: "print",
        params: &[PRINT_PARAMS],
        switches: PRINT_SWITCHES,
        unnamed: &[],
        filter: true,
    }
}

/// `get <item> <value-name>`: one property of one item.
const fn get_verb() -> Verb {
    Verb {
        name: "get",
        params: &[],
        switches: &[],
        unnamed: &[ArgType::Items, ArgType::Str],
        filter: false,
    }
}

/// A verb that takes named parameters only (`add`, `copy`, `set` of a singleton menu).
const fn named(name: &'static str, params: &'static [Params]) -> Verb {
    Verb {
        name,
        params,
        switches: &[],
        unnamed: &[],
        filter: false,
    }
}

/// A verb acting on the items named first (`remove <items>`, `set <items> name=value`).
const fn on_items(
    name: &'static str,
    params: &'static [Params],
    switches: &'static [&'static str],
) -> Verb {
    Verb {
        name,
        params,
        switches,
        unnamed: &[ArgType::Items],
        filter: false,
    }
}

/// `print` of a menu with a single item and no columns to choose.
const fn single_print() -> Verb {
    Verb {
        name: "print",
        params: &[],
        switches: &["without-paging"],
        unnamed: &[],
        filter: false,
    }
}

const fn find_verb() -> Verb {
    Verb {
        name: "find",
        params: &[],
        switches: &[],
        unnamed: &[],
        filter: true,
    }
}

/// Every menu rds-sim models.
pub static MENUS: &[Menu] = &[
    Menu {
        path: "",
        verbs: &[],
        unmodeled: &[],
    },
    Menu {
        path: "disk",
        verbs: &[
            named("add", &[DISK_ADD_ONLY, DISK_SETTABLE]),
            on_items("set", &[DISK_SETTABLE], &[]),
            on_items("remove", &[], &[]),
            get_verb(),
            print_verb(),
            find_verb(),
            named(
                "copy",
                &[&[
                    ("src", ArgType::Str),
                    ("dst", ArgType::Str),
                    ("src-offset", ArgType::Size),
                    ("dst-offset", ArgType::Size),
                    ("size", ArgType::Size),
                ]],
            ),
            on_items("monitor-traffic", &[], &["once"]),
        ],
        unmodeled: &[
            "blink",
            "check",
            "comment",
            "disable",
            "enable",
            "eject",
            "format",
            "nvme-discover",
            "raid-scrub",
            "repair",
            "reset",
            "reset-counters",
            "scan",
            "smart-info",
            "test",
            "trim",
            "unset",
        ],
    },
    Menu {
        path: "disk/btrfs",
        verbs: &[],
        unmodeled: &[],
    },
    Menu {
        path: "disk/btrfs/filesystem",
        verbs: &[print_verb(), find_verb()],
        unmodeled: &[
            "add-device",
            "balance-cancel",
            "balance-start",
            "remove-device",
            "replace-cancel",
            "replace-device",
            "reset-counters",
            "scrub-cancel",
            "scrub-start",
            "set",
        ],
    },
    Menu {
        path: "disk/btrfs/subvolume",
        verbs: &[
            named(
                "add",
                &[&[
                    ("fs", ArgType::Str),
                    ("name", ArgType::Str),
                    ("parent", ArgType::Str),
                    ("read-only", ArgType::Bool),
                ]],
            ),
            on_items("remove", &[], &[]),
            get_verb(),
            print_verb(),
            find_verb(),
        ],
        unmodeled: &["set"],
    },
    Menu {
        path: "disk/btrfs/transfer",
        verbs: &[],
        unmodeled: &["add", "print", "remove"],
    },
    Menu {
        path: "file",
        verbs: &[
            named(
                "add",
                &[&[
                    ("name", ArgType::Path),
                    ("type", ArgType::Enum(&["file", "directory"])),
                    ("contents", ArgType::Str),
                ]],
            ),
            get_verb(),
            print_verb(),
            find_verb(),
            on_items("remove", &[], &[]),
        ],
        unmodeled: &["copy", "read", "set", "sync", "rsync-daemon"],
    },
    Menu {
        path: "system",
        verbs: &[],
        unmodeled: &[],
    },
    Menu {
        path: "system/resource",
        verbs: &[single_print()],
        unmodeled: &["monitor", "usb", "pci", "irq", "cpu", "hardware"],
    },
    Menu {
        path: "system/identity",
        verbs: &[single_print(), named("set", &[&[("name", ArgType::Str)]])],
        unmodeled: &[],
    },
];

impl Menu {
    pub fn root() -> &'static Menu {
        &MENUS[0]
    }

    pub fn by_path(path: &str) -> Option<&'static Menu> {
        MENUS.iter().find(|m| m.path == path)
    }

    /// The sub-menu named `word` below this one.
    pub fn child(&self, word: &str) -> Option<&'static Menu> {
        let path = if self.path.is_empty() {
            word.to_string()
        } else {
            format!("{}/{}", self.path, word)
        };
        Menu::by_path(&path)
    }

    pub fn verb(&self, word: &str) -> Option<&'static Verb> {
        self.verbs.iter().find(|v| v.name == word)
    }
}

impl Verb {
    pub fn param(&self, name: &str) -> Option<ArgType> {
        self.params
            .iter()
            .flat_map(|group| group.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}
