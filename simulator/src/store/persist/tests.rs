use super::*;

fn disk(id: u32, slot: &str) -> Arc<Disk> {
    Arc::new(Disk {
        id,
        slot: slot.into(),
        file_path: format!("pool/{slot}.img"),
        file_size: 1 << 30,
        file_offset: 0,
        mount_filesystem: false,
        mount_read_only: false,
        compress: false,
        nvme_tcp_export: true,
        nvme_tcp_server_port: 4420,
        nvme_tcp_server_nqn: format!("nqn:{slot}"),
        nvme_tcp_server_allow_host_name: String::new(),
        comment: None,
        uuid: format!("{id:032x}"),
    })
}

/// Commits `new` after `state`, as the store does, and makes it current.
fn commit(p: &mut Persisted, state: &mut State, new: State) {
    p.commit(state, &new).unwrap();
    *state = new;
}

/// Adds, changes and removes disks: three journal lines after the header.
fn churn(p: &mut Persisted, state: &mut State) {
    for slot in ["a", "b", "c"] {
        let mut new = state.clone();
        new.disks.push(disk(new.next_id, slot));
        new.next_id += 1;
        commit(p, state, new);
    }
    let mut new = state.clone();
    Arc::make_mut(&mut new.disks[1]).comment = Some("changed".into());
    new.disks.remove(0);
    commit(p, state, new);
}

fn journal_lines(dir: &Path) -> usize {
    fs::read_to_string(dir.join("state.log"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn commits_go_to_the_journal_and_reopening_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut state, mut p) = Persisted::open(dir.path()).unwrap();
    assert_eq!(state, State::default());
    churn(&mut p, &mut state);
    assert_eq!(journal_lines(dir.path()), 5, "a header and four commits");
    assert_eq!(
        state
            .disks
            .iter()
            .map(|d| d.slot.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
    // The process is killed: nothing is flushed or closed on the way out.
    std::mem::forget(p);
    let (reloaded, _) = Persisted::open(dir.path()).unwrap();
    assert_eq!(reloaded, state);
    assert_eq!(journal_lines(dir.path()), 1, "opening folds the journal in");
}

#[test]
fn a_commit_killed_mid_write_is_dropped_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut state, mut p) = Persisted::open(dir.path()).unwrap();
    churn(&mut p, &mut state);
    drop(p);
    let mut log = OpenOptions::new()
        .append(true)
        .open(dir.path().join("state.log"))
        .unwrap();
    log.write_all(b"{\"next-id\":99,\"put\":[{\"id\":").unwrap();
    let (mut reloaded, mut p) = Persisted::open(dir.path()).unwrap();
    assert_eq!(reloaded, state);
    churn(&mut p, &mut reloaded);
    drop(p);
    assert_eq!(Persisted::open(dir.path()).unwrap().0, reloaded);
}

#[test]
fn a_journal_left_from_before_the_last_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut state, mut p) = Persisted::open(dir.path()).unwrap();
    churn(&mut p, &mut state);
    let stale = fs::read(dir.path().join("state.log")).unwrap();
    // A change a journal line cannot say: a new snapshot, then the journal starts afresh. A crash
    // between the two leaves the old journal behind the new snapshot.
    let mut new = state.clone();
    new.identity = "rds-2".into();
    new.disks.remove(0);
    commit(&mut p, &mut state, new);
    assert_eq!(journal_lines(dir.path()), 1);
    fs::write(dir.path().join("state.log"), stale).unwrap();
    assert_eq!(Persisted::open(dir.path()).unwrap().0, state);
}

#[test]
fn a_snapshot_from_before_the_journal_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = State::default();
    state.disks.push(disk(0x10, "old"));
    fs::write(
        dir.path().join("state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    assert_eq!(Persisted::open(dir.path()).unwrap().0, state);
    assert!(!dir.path().join(".state.json.tmp").exists());
}

#[test]
fn a_long_journal_is_folded_into_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut state, mut p) = Persisted::open(dir.path()).unwrap();
    let mut folded = false;
    for round in 0..10_000 {
        let mut new = state.clone();
        new.disks = vec![disk(new.next_id, &format!("d{round}"))];
        new.next_id += 1;
        commit(&mut p, &mut state, new);
        let len = fs::metadata(dir.path().join("state.log")).unwrap().len();
        folded |= round > 0 && len < 100;
        assert!(len <= COMPACT_AT + 1024, "the journal grew to {len} bytes");
    }
    assert!(folded, "the journal was never folded");
    drop(p);
    assert_eq!(Persisted::open(dir.path()).unwrap().0, state);
}
