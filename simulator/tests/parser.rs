//! The RouterOS parser: paths, quoting, escapes, substitution, `where`, and every error path, with
//! RouterOS's exact error text and positions (REFERENCE.md §3, §4; captures.md §5).

use rds_sim::routeros::menu::Menu;
use rds_sim::routeros::script::{Arg, CmpOp, Expr, Statement, parse};

fn err(line: &str) -> String {
    parse(line, Menu::root())
        .expect_err(&format!("{line:?} should not parse"))
        .to_string()
}

fn one(line: &str) -> rds_sim::routeros::script::Command {
    let mut stmts = parse(line, Menu::root()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(stmts.len(), 1, "{line:?}");
    match stmts.remove(0) {
        Statement::Menu(c) => c,
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

fn text(arg: &Arg) -> &str {
    match arg {
        Arg::Text { text, .. } => text,
        Arg::Sub(_) => panic!("expected text, got a substitution"),
    }
}

fn arg<'a>(cmd: &'a rds_sim::routeros::script::Command, name: &str) -> &'a str {
    text(&cmd.args.iter().find(|(n, _)| n == name).unwrap().1)
}

#[test]
fn paths_by_space_or_slash_are_the_same_command() {
    for line in [
        "/disk print detail",
        "/disk/print detail",
        "/disk/print  detail ",
        "disk print detail",
    ] {
        let c = one(line);
        assert_eq!((c.menu.path, c.verb.name), ("disk", "print"), "{line}");
        assert_eq!(c.switches, vec!["detail"], "{line}");
    }
    let c = one("/system/resource/print");
    assert_eq!((c.menu.path, c.verb.name), ("system/resource", "print"));
    let c = one("/system identity print");
    assert_eq!(c.menu.path, "system/identity");
}

#[test]
fn real_routeros_error_texts_and_positions() {
    // captures.md §5, measured on RouterOS 7.21–7.23.
    assert_eq!(
        err("/system/resource/print bogus=1"),
        "expected end of command (line 1 column 24)"
    );
    assert_eq!(err("/nonsense/command"), "syntax error (line 1 column 10)");
    assert_eq!(err(":put $myVar"), "syntax error (line 1 column 7)");
    assert!(err(":put 'a$b'").starts_with("syntax error (line 1 column"));
    assert_eq!(err("this"), "bad command name this (line 1 column 1)");
}

#[test]
fn an_empty_value_swallows_the_next_argument() {
    // `name=` followed by another argument takes it as the value; the rest is left over.
    assert_eq!(
        err("/system identity set name= comment=yes"),
        "expected end of command (line 1 column 35)"
    );
    // Written as `name=""` the value is empty and nothing is swallowed.
    let c = one("/disk set x comment=\"\" slot=y");
    assert_eq!(arg(&c, "comment"), "");
    assert_eq!(arg(&c, "slot"), "y");
    // At the end of the line `name=` is accepted.
    let c = one("/disk set x comment=");
    assert_eq!(arg(&c, "comment"), "");
}

#[test]
fn every_escape_of_the_reference() {
    let c = one(r#"/disk set x comment="a\"b\\c\nd\re\tf\$g\_h\ai\bj\fk\vl""#);
    assert_eq!(
        arg(&c, "comment"),
        "a\"b\\c\nd\re\tf$g h\u{7}i\u{8}j\u{c}k\u{b}l"
    );
    let c = one(r#"/disk set x comment="\48\45\4C\4C\4F""#);
    assert_eq!(arg(&c, "comment"), "HELLO");
    // TIK's measured table (REFERENCE.md §3.2).
    let c = one(r#"/disk set x comment="C:\temp\new w""#);
    assert_eq!(arg(&c, "comment"), "C:\temp\new w");
    let c = one(r#"/disk set x comment="x$y z""#);
    assert_eq!(
        arg(&c, "comment"),
        "x z",
        "undefined variables vanish silently"
    );
}

#[test]
fn bad_escapes_and_unquoted_metacharacters_are_syntax_errors() {
    assert_eq!(
        err(r#"/disk set x comment="x\y z""#),
        "syntax error (line 1 column 23)"
    );
    assert_eq!(
        err(r#"/disk set x comment="\4g""#),
        "syntax error (line 1 column 22)"
    );
    assert_eq!(
        err(r#"/disk set x comment="\4c""#),
        "syntax error (line 1 column 22)"
    );
    assert_eq!(
        err("/disk set x comment=x$y"),
        "syntax error (line 1 column 23)"
    );
    assert_eq!(
        err(r"/disk set x comment=x\y"),
        "syntax error (line 1 column 22)"
    );
    assert_eq!(
        err("/disk set x comment='a'"),
        "syntax error (line 1 column 21)"
    );
}

#[test]
fn unbalanced_quotes_and_brackets_fail() {
    assert_eq!(
        err(r#"/disk set x comment="abc"#),
        "syntax error (line 1 column 21)"
    );
    assert!(err(r#"/disk remove [find where slot="x""#).starts_with("syntax error"));
    assert!(err("/disk remove [find").starts_with("syntax error"));
}

#[test]
fn unknown_names_fail_where_routeros_fails() {
    assert_eq!(
        err("/disk add bogus=1"),
        "expected end of command (line 1 column 11)"
    );
    assert_eq!(
        err("/disk frobnicate"),
        "bad command name frobnicate (line 1 column 7)"
    );
    assert_eq!(
        err("/disk print bogus"),
        "expected end of command (line 1 column 13)"
    );
    assert_eq!(
        err("/disk monitor-traffic a b"),
        "bad parameter b (line 1 column 25)"
    );
    assert_eq!(
        err("/interface nvme-tcp print"),
        "bad command name interface (line 1 column 2)"
    );
    assert_eq!(
        err("/disk format x"),
        "failure: rds-sim does not model /disk/format"
    );
}

#[test]
fn injection_attempts_in_unquoted_values_fail_to_parse() {
    // A `;` ends the command: the rest is a new, unknown command, so the whole line is refused.
    assert_eq!(
        err("/disk add type=file slot=a;b"),
        "bad command name b (line 1 column 28)"
    );
    assert_eq!(
        err("/disk add type=file slot=a\nb"),
        "bad command name b (line 2 column 1)"
    );
    assert_eq!(
        err("/disk add type=file slot=a[b"),
        "expected end of command (line 1 column 27)"
    );
    assert_eq!(
        err("/disk add type=file slot=a$b"),
        "syntax error (line 1 column 28)"
    );
}

#[test]
fn duplicate_arguments_are_refused() {
    assert_eq!(
        err("/disk set x slot=a slot=b"),
        "expected end of command (line 1 column 20)"
    );
}

#[test]
fn substitution_and_unnamed_items() {
    let c = one(r#"/disk remove [find where slot="pvc-1"]"#);
    let [Arg::Sub(inner)] = c.unnamed.as_slice() else {
        panic!("expected a substitution, got {:?}", c.unnamed)
    };
    let Statement::Menu(find) = inner.as_ref() else {
        panic!("expected find")
    };
    assert_eq!(
        (find.menu.path, find.verb.name),
        ("disk", "find"),
        "find inherits the menu"
    );
    assert_eq!(
        find.filter,
        Some(Expr::Compare {
            prop: "slot".into(),
            op: CmpOp::Eq,
            value: "pvc-1".into(),
            opaque: false
        })
    );
    let c = one(r#"/disk monitor-traffic "pvc-1" once"#);
    assert_eq!(text(&c.unnamed[0]), "pvc-1");
    assert_eq!(c.switches, vec!["once"]);
}

#[test]
fn get_takes_an_item_then_a_value_name() {
    let c = one(r#"/file get "storage-pool/probe/a.txt" contents"#);
    let words: Vec<_> = c.unnamed.iter().map(text).collect();
    assert_eq!(words, vec!["storage-pool/probe/a.txt", "contents"]);
    let stmts = parse(":put [/file/get storage-pool/a.txt contents]", Menu::root()).unwrap();
    let [Statement::Put(Arg::Sub(inner))] = stmts.as_slice() else {
        panic!("expected :put [ … ], got {stmts:?}")
    };
    let Statement::Menu(get) = inner.as_ref() else {
        panic!("expected a menu command, got {inner:?}")
    };
    assert_eq!((get.menu.path, get.verb.name), ("file", "get"));
    assert_eq!(get.unnamed.len(), 2);
    assert_eq!(
        err("/file get a.txt contents size"),
        "bad parameter size (line 1 column 26)"
    );
}

#[test]
fn where_expressions_with_every_operator() {
    let c = one(
        r#"/disk print where slot~"^pvc-" and !(nvme-tcp-export=no) or size>=10 && slot!=x || raid-master"#,
    );
    let Some(Expr::Or(left, right)) = c.filter else {
        panic!("or binds loosest: {:?}", c.filter)
    };
    assert!(matches!(*right, Expr::Truthy(ref p) if p == "raid-master"));
    let Expr::Or(a, b) = *left else { panic!() };
    assert!(matches!(*a, Expr::And(..)));
    assert!(matches!(*b, Expr::And(..)));
    let c = one("/file print where name=raid10/x.img");
    assert!(matches!(c.filter, Some(Expr::Compare { opaque: true, .. })));
}

#[test]
fn globals_put_and_serialize() {
    let stmts = parse(
        r#":put [:serialize to=json [/disk print detail as-value where slot="a"]]"#,
        Menu::root(),
    )
    .unwrap();
    let [Statement::Put(Arg::Sub(inner))] = stmts.as_slice() else {
        panic!("{stmts:?}")
    };
    assert!(matches!(inner.as_ref(), Statement::Serialize { to, .. } if to == "json"));
    assert_eq!(err(":frob 1"), "bad command name frob (line 1 column 2)");
}

#[test]
fn statements_chain_with_semicolons_and_comments_end_a_line() {
    let stmts = parse(
        "/disk print count-only; /file print count-only # note",
        Menu::root(),
    )
    .unwrap();
    assert_eq!(stmts.len(), 2);
}

/// `find` takes the arguments of `set` as equalities (REFERENCE §3.3), alone, together, with a
/// `where` after them, and inside a substitution, as in the roadmap's snapshot command.
#[test]
fn find_takes_set_arguments_as_equalities() {
    let equal = |prop: &str, value: &str| Expr::Compare {
        prop: prop.into(),
        op: CmpOp::Eq,
        value: value.into(),
        opaque: false,
    };
    let c = one("/disk find slot=pvc-1");
    assert_eq!(c.filter, Some(equal("slot", "pvc-1")));
    let c = one(r#"/disk find slot="pvc-1" nvme-tcp-server-port=4420"#);
    assert_eq!(
        c.filter,
        Some(Expr::And(
            Box::new(equal("slot", "pvc-1")),
            Box::new(equal("nvme-tcp-server-port", "4420"))
        ))
    );
    let c = one("/disk find slot=pvc-1 where nvme-tcp-export");
    assert_eq!(
        c.filter,
        Some(Expr::And(
            Box::new(equal("slot", "pvc-1")),
            Box::new(Expr::Truthy("nvme-tcp-export".into()))
        ))
    );
    let c = one(
        "/disk add type=file copy-from=[find slot=pvc-1] file-path=storage-pool/csi/snap-1.img \
         slot=snap-1",
    );
    assert_eq!(arg(&c, "slot"), "snap-1");
    // What `set` does not take (`file-path` is `add`'s alone), `find` does not either; nor a
    // command's result as a value.
    assert_eq!(
        err("/disk find bogus=1"),
        "expected end of command (line 1 column 12)"
    );
    assert!(err("/disk find file-path=a.img").starts_with("expected end of command"));
    assert!(err("/disk find slot=[find]").starts_with("expected end of command"));
}

/// Every command form REFERENCE.md gives for the menus rds-sim models, placeholders filled in,
/// parses (`/file copy`, `/interface nvme-tcp` and `/log` are not modeled: FIDELITY.md).
#[test]
fn the_references_command_examples_parse() {
    let lines = [
        r#"/disk add type=file copy-from=[find slot=pvc-1] file-path=storage-pool/csi/snap-1.img slot=snap-1"#,
        r#"/disk add type=file file-path="storage-pool/csi/pvc-1.img" file-size=1073741824 slot="pvc-1" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-1""#,
        r#"/disk add type=file file-path=storage-pool/vol-1/volume.img file-size=1G slot=vol-1"#,
        r#"/disk add type=file file-path=storage-pool/vol-2/volume.img slot=vol-2"#,
        r#"/disk add type=file file-size=1G slot=new"#,
        r#"/disk copy src=pvc-1 dst=pvc-2"#,
        r#"/disk monitor-traffic "pvc-1" once"#,
        r#"/disk monitor-traffic nvme9-part2 once"#,
        r#"/disk print detail where mount-point="storage-pool""#,
        r#"/disk print detail where slot="pvc-1""#,
        r#"/disk print detail where slot~"^pvc-""#,
        r#"/disk remove [find slot="pvc-1"]"#,
        r#"/disk remove [find where slot="raid10"]"#,
        r#"/disk remove raid10-m0"#,
        r#"/disk set "pvc-1" nvme-tcp-export=yes"#,
        r#"/disk set [find slot="pvc-1"] file-size=2G"#,
        r#"/disk set blockdevice1 nvme-tcp-export=yes"#,
        r#"/disk/btrfs/filesystem print"#,
        r#"/disk/btrfs/subvolume/add fs=storage-pool name=vol-1"#,
        r#"/disk/btrfs/subvolume/add fs=storage-pool parent=vol-1 name=snap-1 read-only=yes"#,
        r#"/disk/btrfs/subvolume/add name=Documents fs=BtrfsDisk"#,
        r#"/disk/btrfs/subvolume/add read-only=yes parent=Documents fs=BtrfsDisk name=Snapshots/Documents-22012025"#,
        r#"/disk/btrfs/subvolume/remove [find where name=Documents-22012025]"#,
        r#"/disk/btrfs/subvolume/remove [find name=Documents-22012025]"#,
        r#"/disk/print"#,
        r#"/file print detail where name~"^storage-pool/csi/""#,
        r#"/file print detail"#,
        r#"/file remove "storage-pool/csi/pvc-1.img""#,
        r#"/file remove [find name="storage-pool/csi/pvc-1.img"]"#,
        r#"/file/print"#,
        r#"/system identity print"#,
        r#"/system resource print"#,
    ];
    for line in lines {
        parse(line, Menu::root()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
}
