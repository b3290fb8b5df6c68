//! The injection property: every generated CreateVolume (a CSI name and a StorageClass parameter
//! map, full of `;` `$` `[` `]` `"` `\`, newlines, control characters, unicode, RouterOS syntax
//! and very long strings, `csi.storage.k8s.io/pvc/name` values included) is either rejected with
//! INVALID_ARGUMENT, changing nothing on the RDS, or reaches rds-sim as exactly the intended
//! argument values: rds-sim's parsed-command log shows one `/disk add` whose arguments are the
//! slot `ids::volume_id(name)`, the file path, the size, the port and NQN, and a comment that
//! decodes (`ids::Metadata::parse`) to the very CSI name — and nothing else.
//!
//! This file reads the documented rules (the StorageClass parameter table, the comment's size
//! limit) on its own to say which cases must be accepted and what each value must become; the
//! driver must agree on every case.
//!
//! What runs where. [`CASES`] cases are drawn from proptest strategies by a seeded runner
//! (`INJECTION_SEED`, default [`DEFAULT_SEED`]; a failure names the seed and the case index), the
//! same cases in both tests, without shrinking:
//! - `every_case_is_refused_or_parsed_by_rds_sim_as_exactly_its_values` takes all of them, without
//!   SSH or gRPC: the driver's parameter validation (`Parameters::parse`) and comment codec decide
//!   acceptance, and for each accepted case the driver's command builder (`Cmd::disk_add`) makes
//!   the `/disk add` line from the validated values, as CreateVolume does, which an in-process
//!   rds-sim then runs. Its pool reports full, so the simulator parses the line, logs the parsed
//!   command and checks each argument, then refuses for space and commits nothing: this tier
//!   checks the line, not the state.
//! - `a_stratified_subset_reaches_rds_sim_exactly_through_the_driver` takes every case that must
//!   be rejected and [`E2E_ACCEPTED`] accepted cases drawn in turn from each kind of name and of
//!   parameter map, and sends them the real way: CreateVolume over the CSI socket to rds-csi
//!   in-process, SSH to rds-sim, then DeleteVolume. Mutations are serialised per RDS, so the
//!   cases are spread over [`LANES`] driver and simulator pairs.

use rds_csi::rds::command::FENCED_HOST;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU16;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use rds_csi::config::{Config, DEFAULT_NQN_PREFIX};
use rds_csi::controller::Parameters;
use rds_csi::csi::v1::{CapacityRange, CreateVolumeRequest, DeleteVolumeRequest};
use rds_csi::ids::{self, IdKind, Metadata};
use rds_csi::rds::command::{Cmd, DEFAULT_NVME_PORT, DiskSpec, NvmeExport};
use rds_csi::rds::value::{ByteSize, Comment, Nqn, RosPath};
use rds_e2e::config::Settings;
use rds_e2e::observed::Observed;
use rds_e2e::requests;
use rds_e2e::target::Target;
use rds_sim::engine::{EngineConfig, LoggedCommand};
use rds_sim::faults::Fault;
use rds_sim::sim::{LogRecord, Sim, SimConfig};
use rds_sim::ssh::Reply;
use rds_sim::store::Pool;
use tonic::Code;

const CASES: usize = 10_000;
const DEFAULT_SEED: u64 = 0x5eed_0003;
const E2E_ACCEPTED: usize = 1_000;
const LANES: usize = 8;
const GIB: u64 = 1 << 30;
const POOL_BYTES: u64 = 100 * GIB;
/// The largest size asked for; backing files are sparse.
const MAX_REQUEST: u64 = 64 * GIB;
const BLOCK: u64 = 4096;
const SIDECAR_PREFIX: &str = "csi.storage.k8s.io/";

// ---------------------------------------------------------------------------------------------
// Cases

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NameKind {
    /// external-provisioner's `pvc-<uuid>`.
    PvcUuid,
    /// Letters, RouterOS specials, control characters and arbitrary unicode, possibly empty.
    Specials,
    /// Pieces of RouterOS syntax meant to break out of a quoted value.
    Injection,
    /// Printable unicode.
    Unicode,
    /// 100 to 1,100 characters, around the comment's size limit.
    Long,
}

#[derive(Debug, Clone)]
struct Case {
    index: usize,
    kind: NameKind,
    name: String,
    parameters: BTreeMap<String, String>,
    required_bytes: u64,
}

impl Case {
    fn request(&self) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: self.name.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: i64::try_from(self.required_bytes).expect("sizes fit an i64"),
                limit_bytes: 0,
            }),
            volume_capabilities: vec![requests::single_node_writer()],
            parameters: self.request_parameters(),
            ..Default::default()
        }
    }

    fn request_parameters(&self) -> HashMap<String, String> {
        self.parameters.clone().into_iter().collect()
    }

    /// Which kinds of parameters the map holds, for drawing a varied subset.
    fn parameter_kind(&self) -> u8 {
        let has = |keys: &[&str]| self.parameters.keys().any(|k| keys.contains(&k.as_str()));
        let sidecar = self
            .parameters
            .keys()
            .any(|k| k.starts_with(SIDECAR_PREFIX));
        u8::from(has(&["baseDir", "nvmePort"]))
            | u8::from(has(&[
                "fsType",
                "ctrlLossTmo",
                "reconnectDelay",
                "keepAliveTmo",
                "nrIoQueues",
            ])) << 1
            | u8::from(sidecar) << 2
    }

    fn label(&self, seed: u64) -> String {
        format!(
            "case {} (INJECTION_SEED={seed}) name {:?} parameters {:?} required {}",
            self.index, self.name, self.parameters, self.required_bytes
        )
    }
}

const SPECIALS: &[&str] = &[
    ";", "$", "[", "]", "\"", "\\", "\n", "\r", "\t", "{", "}", "=", "~", "^", "*", "?", "/", " ",
    "'", "`", "#", "!", "%", ",", ":", "(", ")", ".", "\0", "\u{7f}", "\u{1b}", "é", "€", "✓",
    "😀", "中", "\u{202e}", "\u{feff}", "\u{200b}",
];

const INJECTIONS: &[&str] = &[
    "\" comment=\"pwned",
    "\"; /disk remove [find]; :put \"",
    "$[/system reboot]",
    "[/disk remove [find]]",
    "$(:put x)",
    "\\\"",
    "\\",
    "\n/system reboot\n",
    "\r\n/disk print\r\n",
    "${x}",
    "$x",
    "\"]",
    "[find]",
    "slot=\"x\" ",
    " nvme-tcp-server-port=1",
    ";;; comment",
    "\\$",
    "%41%2",
    "rds-csi:1,kind:volume,name:x",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9-]{1,8}",
        3 => prop::sample::select(SPECIALS).prop_map(str::to_owned),
        2 => prop::sample::select(INJECTIONS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Up to `fragments` fragments, possibly none.
fn nasty(fragments: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..=fragments).prop_map(|parts| parts.concat())
}

fn uuid() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|bytes| {
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

fn name() -> impl Strategy<Value = (NameKind, String)> {
    let long_alphabet = prop::sample::select(vec!['a', 'Z', '7', '-', 'é', '€', '😀', '"', '$']);
    prop_oneof![
        2 => uuid().prop_map(|u| (NameKind::PvcUuid, format!("pvc-{u}"))),
        3 => nasty(12).prop_map(|n| (NameKind::Specials, n)),
        2 => prop::collection::vec(prop::sample::select(INJECTIONS), 1..4)
            .prop_map(|parts| (NameKind::Injection, parts.concat())),
        2 => "\\PC{1,40}".prop_map(|n| (NameKind::Unicode, n)),
        1 => prop::collection::vec(long_alphabet, 100..1100)
            .prop_map(|chars| (NameKind::Long, chars.into_iter().collect())),
    ]
}

fn number_text<T: std::fmt::Display>(
    range: impl Strategy<Value = T>,
) -> impl Strategy<Value = String> {
    // Leading zeros and a `+` sign are numbers too; the driver must normalise them.
    (range, prop::sample::select(vec!["", "0", "00", "+"]))
        .prop_map(|(n, prefix)| format!("{prefix}{n}"))
}

fn parameter() -> impl Strategy<Value = (String, String)> {
    let key = |k: &'static str| Just(k.to_owned());
    let tunable = prop::sample::select(vec!["reconnectDelay", "keepAliveTmo", "nrIoQueues"])
        .prop_map(str::to_owned);
    let sidecar = prop::sample::select(vec![
        "csi.storage.k8s.io/pvc/name",
        "csi.storage.k8s.io/pvc/namespace",
        "csi.storage.k8s.io/pv/name",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        2 => (key("fsType"), prop_oneof![
            3 => prop::sample::select(vec!["ext4", "xfs"]).prop_map(str::to_owned),
            1 => nasty(3),
        ]),
        2 => (key("baseDir"), prop_oneof![3 => "[A-Za-z0-9._-]{1,16}", 1 => nasty(3)]),
        2 => (key("nvmePort"), prop_oneof![
            3 => number_text(0u32..=70_000),
            1 => nasty(3),
        ]),
        2 => (key("ctrlLossTmo"), prop_oneof![
            1 => Just("-1".to_owned()),
            2 => number_text(-3i64..=i64::from(i32::MAX) + 1),
            1 => nasty(2),
        ]),
        2 => (tunable, prop_oneof![3 => number_text(0u64..=u64::from(u32::MAX) + 1), 1 => nasty(2)]),
        4 => (sidecar, nasty(10)),
        1 => (nasty(3), nasty(3)),
    ]
}

fn case() -> impl Strategy<Value = ((NameKind, String), BTreeMap<String, String>, u64)> {
    (
        name(),
        prop::collection::vec(parameter(), 0..5).prop_map(|pairs| pairs.into_iter().collect()),
        1..=MAX_REQUEST,
    )
}

fn seed() -> u64 {
    std::env::var("INJECTION_SEED")
        .ok()
        .map(|text| text.parse().expect("INJECTION_SEED is a whole number"))
        .unwrap_or(DEFAULT_SEED)
}

fn cases(seed: u64) -> Vec<Case> {
    let bytes: Vec<u8> = seed.to_le_bytes().repeat(4);
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let strategy = case();
    (0..CASES)
        .map(|index| {
            let ((kind, name), parameters, required_bytes) = strategy
                .new_tree(&mut runner)
                .expect("the strategies always produce a value")
                .current();
            Case {
                index,
                kind,
                name,
                parameters,
                required_bytes,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What the driver must do with a case, read from the documented rules

/// Where the driver puts volumes: what its configuration says.
struct Layout {
    pool: String,
    base_dir: String,
    nqn_prefix: String,
    nvme_port: u16,
}

impl Layout {
    fn of(config: &Config) -> Layout {
        Layout {
            pool: config.rds.pool.clone(),
            base_dir: config.rds.base_dir.clone(),
            nqn_prefix: config.rds.nqn_prefix.clone(),
            nvme_port: config.rds.nvme_port,
        }
    }

    /// The layout of the in-process simulator that runs without a driver.
    fn standalone() -> Layout {
        Layout {
            pool: "storage-pool".to_owned(),
            base_dir: "csi".to_owned(),
            nqn_prefix: DEFAULT_NQN_PREFIX.to_owned(),
            nvme_port: DEFAULT_NVME_PORT.get(),
        }
    }
}

/// What an accepted case chooses; `None` leaves the configured default.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Intended {
    dir: Option<String>,
    port: Option<u16>,
    size: u64,
    /// What CreateVolume must return as the volume context.
    context: BTreeMap<String, String>,
}

/// `Err` says why the case must be refused.
fn judge(case: &Case) -> Result<Intended, String> {
    if case.name.is_empty() {
        return Err("the name is empty".into());
    }
    // The CSI spec bans C0 controls but TAB, LF and CR, plus DEL and the C1 controls.
    let banned =
        |c: char| matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0C | 0x0E..=0x1F | 0x7F..=0x9F);
    if case.name.chars().any(banned) {
        return Err("the name holds a control character CSI bans".into());
    }
    let mut intended = Intended {
        dir: None,
        port: None,
        size: case.required_bytes.next_multiple_of(BLOCK),
        context: BTreeMap::new(),
    };
    for (key, value) in &case.parameters {
        let refused = || Err(format!("parameter {key}={value:?} breaks its rule"));
        match key.as_str() {
            "fsType" if matches!(value.as_str(), "ext4" | "xfs") => {
                intended.context.insert(key.clone(), value.clone());
            }
            // The driver reads baseDir as a RosPath, which drops one leading '/'.
            "baseDir" => match value.strip_prefix('/').unwrap_or(value) {
                segment if is_path_segment(segment) => intended.dir = Some(segment.to_owned()),
                _ => return refused(),
            },
            "nvmePort" => match value.parse::<u16>() {
                Ok(port) if port > 0 => intended.port = Some(port),
                _ => return refused(),
            },
            "ctrlLossTmo" => match value.parse::<i32>() {
                Ok(seconds) if seconds == -1 || seconds > 0 => {
                    intended.context.insert(key.clone(), seconds.to_string());
                }
                _ => return refused(),
            },
            "reconnectDelay" | "keepAliveTmo" | "nrIoQueues" => match value.parse::<u32>() {
                Ok(n) if n > 0 => {
                    intended.context.insert(key.clone(), n.to_string());
                }
                _ => return refused(),
            },
            sidecar if sidecar.starts_with(SIDECAR_PREFIX) => {}
            _ => return refused(),
        }
    }
    let needed = comment_len(case, &intended.context);
    if needed > Comment::MAX_LEN {
        return Err(format!("the name needs a {needed}-byte comment"));
    }
    Ok(intended)
}

fn is_path_segment(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= RosPath::MAX_SEGMENT_LEN
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The length of the comment the name needs: `rds-csi:1,kind:volume,name:<name, each byte
/// outside A-Z a-z 0-9 - . _ ~ as %XX>,created:<10 digits>,requested:<bytes>` and, when the
/// volume context is not empty, `,context:<k=v&k=v, with = and & as %XX>`.
fn comment_len(case: &Case, context: &BTreeMap<String, String>) -> usize {
    let context_len = if context.is_empty() {
        0
    } else {
        ",context:".len()
            + context
                .iter()
                .map(|(k, v)| k.len() + "%3D".len() + v.len())
                .sum::<usize>()
            + "%26".len() * (context.len() - 1)
    };
    let encoded: usize = case
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                1
            } else {
                3
            }
        })
        .sum();
    "rds-csi:1,kind:volume,name:".len()
        + encoded
        + ",created:".len()
        + 10
        + ",requested:".len()
        + case.required_bytes.to_string().len()
        + context_len
}

/// Checks a logged `/disk add` against what the case must become.
fn check_add(
    logged: &LoggedCommand,
    case: &Case,
    intended: &Intended,
    layout: &Layout,
) -> Result<(), String> {
    let slot = ids::volume_id(&case.name).to_string();
    let well_formed = (slot.starts_with("pvc-") || slot.starts_with("vol-"))
        && slot.len() == 32
        && slot[4..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(format!("slot {slot:?} is not (pvc|vol)-<28 hex digits>"));
    }
    let mut expected: BTreeMap<&str, String> = BTreeMap::from([
        ("type", "file".to_owned()),
        (
            "file-path",
            format!(
                "{}/{}/{slot}.img",
                layout.pool,
                intended.dir.as_ref().unwrap_or(&layout.base_dir)
            ),
        ),
        ("file-size", intended.size.to_string()),
        ("slot", slot.clone()),
        ("mount-filesystem", "no".to_owned()),
        ("nvme-tcp-export", "yes".to_owned()),
        (
            "nvme-tcp-server-port",
            intended.port.unwrap_or(layout.nvme_port).to_string(),
        ),
        (
            "nvme-tcp-server-nqn",
            format!("{}:{slot}", layout.nqn_prefix),
        ),
        ("nvme-tcp-server-allow-host-name", FENCED_HOST.to_owned()),
    ]);
    let mut args: BTreeMap<&str, String> = logged
        .args
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    if args.len() != logged.args.len() {
        return Err(format!("an argument appears twice: {:?}", logged.args));
    }
    let comment = args
        .remove("comment")
        .ok_or_else(|| format!("no comment in {:?}", logged.args))?;
    if logged.path != "/disk/add"
        || logged.unnamed.is_some()
        || !logged.switches.is_empty()
        || logged.filter.is_some()
    {
        return Err(format!("not a plain /disk add: {logged:?}"));
    }
    if args != expected {
        expected.retain(|name, value| args.get(name) != Some(value));
        return Err(format!(
            "rds-sim parsed {args:?}; these differ from the intended {expected:?}"
        ));
    }
    let metadata = Metadata::parse(&comment)
        .map_err(|e| format!("the comment {comment:?} does not decode: {e}"))?;
    let wanted = Metadata {
        kind: IdKind::Volume,
        csi_name: case.name.clone(),
        source: None,
        created: metadata.created,
        requested_bytes: case.required_bytes,
        context: intended.context.clone(),
        method: None,
        pending: false,
    };
    if metadata != wanted {
        return Err(format!(
            "the comment {comment:?} decodes to {metadata:?}, not {wanted:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Every case: the driver's validation and command builder, parsed by rds-sim

/// The `/disk add` CreateVolume sends for `case`, built from the driver's own validation of
/// its parameters, or why the driver refuses the case.
fn driver_line(case: &Case, layout: &Layout) -> Result<(Cmd, Parameters), String> {
    if case.name.is_empty() {
        return Err("name is required".into());
    }
    if case
        .name
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err("the name holds a banned control character".into());
    }
    let parameters = Parameters::parse(&case.request_parameters())?;
    let metadata = Metadata {
        kind: IdKind::Volume,
        csi_name: case.name.clone(),
        source: None,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is past 1970")
            .as_secs(),
        requested_bytes: case.required_bytes,
        context: parameters
            .volume_context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        method: None,
        pending: false,
    };
    let comment = metadata.to_comment().map_err(|e| e.to_string())?;
    let pool = RosPath::parse(&layout.pool).expect("a valid pool");
    let base_dir = RosPath::parse(&layout.base_dir).expect("a valid base dir");
    let prefix = Nqn::parse(&layout.nqn_prefix).expect("a valid NQN prefix");
    let slot = ids::volume_id(&case.name);
    let spec = DiskSpec {
        file_path: ids::disk_path(
            &pool,
            parameters.base_dir.as_ref().unwrap_or(&base_dir),
            &slot,
        ),
        size: ByteSize::new(case.required_bytes.next_multiple_of(BLOCK))
            .map_err(|e| e.to_string())?,
        export: Some(NvmeExport {
            port: parameters
                .nvme_port
                .or(NonZeroU16::new(layout.nvme_port))
                .expect("a valid default port"),
            nqn: ids::volume_nqn(&prefix, &slot).map_err(|e| e.to_string())?,
        }),
        comment: Some(comment),
        slot,
    };
    Ok((Cmd::disk_add(&spec), parameters))
}

#[tokio::test]
async fn every_case_is_refused_or_parsed_by_rds_sim_as_exactly_its_values() {
    let seed = seed();
    let layout = Layout::standalone();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::open(SimConfig {
        data_dir: dir.path().to_owned(),
        pool: Pool {
            name: layout.pool.clone(),
            size: POOL_BYTES,
        },
        engine: EngineConfig::default(),
        seed,
    })
    .unwrap();
    sim.inject(&Fault::PoolFull { enabled: true }).unwrap();
    let mut next_seq = 0;
    let mut accepted = 0;
    for case in cases(seed) {
        let label = case.label(seed);
        match (judge(&case), driver_line(&case, &layout)) {
            (Err(_), Err(_)) => continue,
            (Err(why), Ok((cmd, _))) => {
                panic!("{label}: must be refused ({why}), but the driver builds `{cmd}`")
            }
            (Ok(_), Err(why)) => panic!("{label}: must be accepted, but the driver refuses: {why}"),
            (Ok(intended), Ok((cmd, parameters))) => {
                let context: BTreeMap<String, String> =
                    parameters.volume_context.into_iter().collect();
                assert_eq!(context, intended.context, "{label}: volume context");
                let reply = sim.exec(0, cmd.as_str()).await;
                let log = sim.log_since(next_seq);
                next_seq += log.len() as u64;
                let printed = match reply {
                    Reply::Output { text, .. } => text,
                    Reply::Hangup => panic!("{label}: rds-sim hung up on `{cmd}`"),
                };
                assert_eq!(
                    printed, "failure: not enough space\r\n",
                    "{label}: rds-sim refused `{cmd}` before the space check"
                );
                let [record] = log.as_slice() else {
                    panic!("{label}: `{cmd}` logged {log:#?}");
                };
                if let Err(problem) = check_add(&record.command, &case, &intended, &layout) {
                    panic!("{label}: `{cmd}`: {problem}");
                }
                accepted += 1;
            }
        }
    }
    eprintln!(
        "{CASES} cases (INJECTION_SEED={seed}): {accepted} parsed by rds-sim as intended, {} refused",
        CASES - accepted
    );
    assert!(
        accepted >= E2E_ACCEPTED && CASES - accepted >= CASES / 10,
        "the strategies must give both outcomes: {accepted} of {CASES} accepted"
    );
    assert!(
        sim.disks().is_empty(),
        "rds-sim committed a disk with its pool full"
    );
}

// ---------------------------------------------------------------------------------------------
// A subset through the driver

/// Every case that must be refused, and `accepted` accepted ones taken in turn from each
/// (kind of name, kind of parameter map).
fn stratified(cases: Vec<Case>, accepted: usize) -> Vec<Case> {
    let mut picked = Vec::new();
    let mut strata: BTreeMap<(NameKind, u8), VecDeque<Case>> = BTreeMap::new();
    for case in cases {
        if judge(&case).is_err() {
            picked.push(case);
        } else {
            strata
                .entry((case.kind, case.parameter_kind()))
                .or_default()
                .push_back(case);
        }
    }
    let refused = picked.len();
    while picked.len() - refused < accepted {
        let before = picked.len();
        for stratum in strata.values_mut() {
            if picked.len() - refused < accepted
                && let Some(case) = stratum.pop_front()
            {
                picked.push(case);
            }
        }
        assert!(
            picked.len() > before,
            "only {} accepted cases",
            picked.len() - refused
        );
    }
    picked
}

fn is_mutation(record: &LogRecord) -> bool {
    ["/add", "/set", "/remove"]
        .iter()
        .any(|verb| record.command.path.ends_with(verb))
}

/// Disks and files on the RDS, directories (which a create makes and a delete keeps) aside.
fn leftovers(sim: &Sim) -> Vec<String> {
    let state = sim.state();
    let disks = state.disks.into_iter().map(|disk| disk.slot);
    let files = state
        .files
        .into_iter()
        .filter(|file| !matches!(file.kind.as_str(), "directory" | "disk"))
        .map(|file| file.name);
    disks.chain(files).collect()
}

/// Sends `cases` one after another through one driver to one simulator.
async fn lane(cases: Vec<Case>, seed: u64) -> Result<(usize, usize), String> {
    let target = Target::start(&Settings::sim_defaults())
        .await
        .map_err(|e| e.to_string())?;
    let sim = target
        .sim()
        .expect("the sim target has a simulator")
        .clone();
    let layout = Layout::of(target.driver_config());
    let mut controller = target.controller();
    let mut next_seq = 0;
    let mut new_log = |sim: &Sim| {
        let log = sim.log_since(next_seq);
        next_seq += log.len() as u64;
        log
    };
    let (mut accepted, mut refused) = (0, 0);
    for case in cases {
        let label = case.label(seed);
        let before = Observed::of_sim(&sim);
        let answer = controller.create_volume(case.request()).await;
        let log = new_log(&sim);
        match (judge(&case), answer) {
            (Err(_), Err(status)) if status.code() == Code::InvalidArgument => {
                let changes = Observed::of_sim(&sim).changes_since(&before);
                if !changes.is_empty() || log.iter().any(is_mutation) {
                    return Err(format!(
                        "{label}: refused, but the RDS changed: {changes:?}, log {log:#?}"
                    ));
                }
                refused += 1;
            }
            (Err(why), answer) => {
                return Err(format!(
                    "{label}: must be refused with INVALID_ARGUMENT ({why}); the driver answered {answer:?}"
                ));
            }
            (Ok(_), Err(status)) => {
                return Err(format!(
                    "{label}: must be accepted; the driver answered {status:?}"
                ));
            }
            (Ok(intended), Ok(response)) => {
                let adds: Vec<&LogRecord> = log
                    .iter()
                    .filter(|r| r.command.path == "/disk/add")
                    .collect();
                let [add] = adds.as_slice() else {
                    return Err(format!(
                        "{label}: expected one /disk add, the log is {log:#?}"
                    ));
                };
                check_add(&add.command, &case, &intended, &layout)
                    .map_err(|problem| format!("{label}: `{}`: {problem}", add.line))?;
                let volume = response.into_inner().volume.unwrap_or_default();
                let context: BTreeMap<String, String> = volume.volume_context.into_iter().collect();
                let slot = ids::volume_id(&case.name).to_string();
                if volume.volume_id != slot
                    || volume.capacity_bytes != intended.size as i64
                    || context != intended.context
                {
                    return Err(format!(
                        "{label}: answered volume {:?} of {} bytes with context {context:?}, \
                         intended {slot} of {} bytes with {:?}",
                        volume.volume_id, volume.capacity_bytes, intended.size, intended.context
                    ));
                }
                controller
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: volume.volume_id,
                        ..Default::default()
                    })
                    .await
                    .map_err(|status| format!("{label}: deleting: {status:?}"))?;
                new_log(&sim);
                let left = leftovers(&sim);
                if !left.is_empty() {
                    return Err(format!("{label}: created then deleted, but left {left:?}"));
                }
                accepted += 1;
            }
        }
    }
    target.shutdown().await.map_err(|e| e.to_string())?;
    Ok((accepted, refused))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stratified_subset_reaches_rds_sim_exactly_through_the_driver() {
    let seed = seed();
    let subset = stratified(cases(seed), E2E_ACCEPTED);
    let mut lanes = tokio::task::JoinSet::new();
    for lane_index in 0..LANES {
        let cases: Vec<Case> = subset
            .iter()
            .skip(lane_index)
            .step_by(LANES)
            .cloned()
            .collect();
        lanes.spawn(lane(cases, seed));
    }
    let (mut accepted, mut refused, mut failures) = (0, 0, Vec::new());
    while let Some(done) = lanes.join_next().await {
        match done.expect("a lane panicked") {
            Ok((a, r)) => {
                accepted += a;
                refused += r;
            }
            Err(failure) => failures.push(failure),
        }
    }
    eprintln!(
        "through the driver (INJECTION_SEED={seed}): {accepted} created exactly and deleted, \
         {refused} refused with INVALID_ARGUMENT and nothing changed"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(accepted, E2E_ACCEPTED);
    assert!(refused > 0);
}
