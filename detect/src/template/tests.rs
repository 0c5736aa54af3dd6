use super::intern::Interner;
use super::miner::canonical;
use super::token::{
    C_DIGIT, C_NOT_DIGIT, C_SLASH, C_SPLIT, Chunks, MaskKind, class, common_affix, is_date_word,
    mask_marked_token,
};
use super::*;

/// One token masked on its own (no cutting at delimiters).
fn masked(tok: &str) -> String {
    let flags = tok.bytes().fold(0, |f, c| f | class(c));
    if flags & (C_DIGIT | C_SLASH) == 0 {
        return tok.to_string();
    }
    let mut out = Vec::new();
    match mask_marked_token(tok.as_bytes(), flags, &mut out) {
        MaskKind::Constant => tok.to_string(),
        MaskKind::Wildcard => WILDCARD_TEXT.to_string(),
        MaskKind::Partial { .. } => String::from_utf8(out).unwrap_or_default(),
    }
}

fn split(line: &str) -> Vec<(&str, u8)> {
    Chunks {
        bytes: line.as_bytes(),
        pos: 0,
    }
    .map(|(a, b, f)| (&line[a..b], f))
    .collect()
}

/// The token texts the miner makes of a line.
fn token_texts(line: &str) -> Vec<String> {
    let mut m = TemplateMiner::new(&TemplateConfig::default());
    m.tokenize(line);
    m.token_texts()
}

fn template_of(m: &mut TemplateMiner, line: &str) -> String {
    let id = m.add(line).template_id;
    m.template_text(id).unwrap_or_default()
}

#[test]
fn chunks_split_on_ascii_whitespace_and_flag_digits_slashes_and_delimiters() {
    assert_eq!(
        split("  a1 b\tc/d\n\x0be\r\x0cf  é9 k=v"),
        vec![
            ("a1", C_DIGIT | C_NOT_DIGIT),
            ("b", C_NOT_DIGIT),
            ("c/d", C_SLASH | C_NOT_DIGIT),
            // Vertical tab is not ASCII whitespace for `split_ascii_whitespace` either.
            ("\x0be", C_NOT_DIGIT),
            ("f", C_NOT_DIGIT),
            ("é9", C_DIGIT | C_NOT_DIGIT),
            ("k=v", C_NOT_DIGIT | C_SPLIT),
        ]
    );
    assert_eq!(split(""), vec![]);
    assert_eq!(split(" \t "), vec![]);
    for line in ["a  b\tc", "\u{a0}x y\u{2003}z", " lead trail "] {
        let ours: Vec<&str> = split(line).into_iter().map(|(t, _)| t).collect();
        let std: Vec<&str> = line.split_ascii_whitespace().collect();
        assert_eq!(ours, std, "{line:?}");
    }
}

#[test]
fn structured_fragments_are_cut_at_their_delimiters_keeping_the_keys() {
    assert_eq!(
        token_texts("ready=true,policy=3,user=bob"),
        vec!["ready", "=true", ",policy", "=<*>", ",user", "=bob"]
    );
    assert_eq!(
        token_texts("onExtend:1514038530000 setTodayTotalDetailSteps=1234"),
        vec!["onExtend", ":<*>", "setTodayTotalDetailSteps", "=<*>"]
    );
    // Trailing delimiters stay with the last piece; apostrophes inside words do not cut.
    assert_eq!(
        token_texts("jk2_init() error: don't [x]"),
        vec!["jk2_init()", "error:", "don't", "[x]"]
    );
    // A host before a port is one variable; a path or URL is not cut.
    assert_eq!(
        token_texts("db-1.example.com:5432 /a/b:c/d http://h:80/x?a=1,b"),
        vec!["<*>", ":<*>", "<*>", "http://<*>"]
    );
    // A path inside a fragment is one variable and keeps the brackets.
    assert_eq!(
        token_texts("LOGIN chdir(/p/gb2/stella/x) failed"),
        vec!["LOGIN", "chdir", "(<*>)", "failed"]
    );
}

#[test]
fn digit_only_tokens_take_the_shortcut_to_the_same_wildcard() {
    assert_eq!(masked("0042"), "<*>");
    assert_eq!(
        token_texts("0042 abc 7 x7"),
        vec!["<*>", "abc", "<*>", "x7"]
    );
}

#[test]
fn date_words() {
    for w in ["Mon", "jun.", "SEPTEMBER,", "Jun/", "thu:"] {
        assert!(is_date_word(w.as_bytes()), "{w}");
    }
    for w in ["Monkey", "ju", "Jun2", "octopus", "", "...", "é", "Xmas"] {
        assert!(!is_date_word(w.as_bytes()), "{w}");
    }
}

#[test]
fn interner_returns_one_id_per_text() {
    let mut i = Interner::new();
    assert_eq!(i.intern(WILDCARD_TEXT, true, true), WILDCARD);
    assert_eq!(
        (i.intern("", false, false), i.intern(" ", false, false)),
        (1, 2)
    );
    let ab = i.intern("ab", false, false);
    // Same first, middle and last byte as "ab" but longer: a different text.
    let abb = i.intern("abb", false, false);
    let long = i.intern("a-much-longer-token-text", true, false);
    assert_eq!((ab, abb, long), (3, 4, 5));
    assert_eq!(i.intern("ab", true, true), ab);
    assert_eq!(i.intern("a-much-longer-token-text", false, false), long);
    assert_eq!(i.text(abb), "abb");
    assert!(!i.is_masked(ab) && !i.is_param_like(ab));
    assert!(i.is_masked(long) && !i.is_param_like(long));
    // Past the initial table size, ids and texts survive the growth.
    let ids: Vec<u32> = (0..5000)
        .map(|n| i.intern(&format!("t{n}"), false, false))
        .collect();
    assert_eq!(ids.first(), Some(&6));
    assert_eq!(ids.last(), Some(&5005));
    for (n, &id) in ids.iter().enumerate() {
        assert_eq!(i.intern(&format!("t{n}"), false, false), id);
        assert_eq!(i.text(id), format!("t{n}"));
    }
    assert_eq!(i.len(), 5006);
    assert_eq!(i.text(99_999), WILDCARD_TEXT);
}

#[test]
fn masking_rules() {
    let cases = [
        ("hello", "hello"),
        ("42", "<*>"),
        ("-17", "<*>"),
        ("3.14", "<*>"),
        ("10.0.0.1", "<*>"),
        ("10.0.0.1:8080", "<*>:<*>"),
        ("/10.250.19.102:54106", "/<*>:<*>"),
        ("blk_-1608999687919862906", "blk_<*>"),
        ("blk_38865049064139660", "blk_<*>"),
        ("uid=0", "uid=<*>"),
        ("(uid=0)", "(uid=<*>)"),
        ("0x1F2e", "<*>"),
        ("a489c868f0c37da93b76227c91bb03908ac0e742", "<*>"),
        ("b9000564-fe1a-409b-b8cc-1e88b294cd1d", "<*>"),
        ("[b9000564-fe1a-409b-b8cc-1e88b294cd1d]", "[<*>]"),
        ("/var/lib/nova/instances/_base/a489c8", "<*>"),
        ("hdfs://host:9000/path", "hdfs://<*>"),
        ("C:\\Windows\\System32\\wuaueng.dll", "<*>"),
        ("HKLM\\SOFTWARE\\Microsoft\\Windows", "<*>"),
        ("HTTP/1.1", "<*>"),
        ("SOCKS5", "SOCKS5"),
        ("ee0", "ee0"),
        ("node-129", "node-<*>"),
        ("core.2275", "core.<*>"),
        // A dotted host name with a variable part is one variable; without one it is kept.
        ("node-17.fareast.corp.example.com", "<*>"),
        ("org.apache.hadoop.Task2", "org.apache.hadoop.Task2"),
        // A constant between two parameters joins them into one.
        ("attempt_1445144423722_0020_m_000000_0", "attempt_<*>"),
        // A short unit glued to a number stays.
        ("5000ms", "<*>ms"),
        ("16GB,", "<*>GB,"),
        ("07:07:00", "<*>:<*>:<*>"),
        // Hexadecimal groups joined by `:` (a hardware address) are one variable.
        ("FF:F2:9F:15:7E:6E:00:0D:60:EA:81:91", "<*>"),
        ("00:0d:60:ea:81:91,", "<*>,"),
        ("(18.4", "(<*>"),
        ("<1", "<<*>"),
        ("x-5", "x-<*>"),
        ("héllo", "héllo"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(masked(input), want, "{input}");
    }
}

#[test]
fn hardware_addresses_are_one_token() {
    assert_eq!(
        token_texts("Ido chip status changed: FF:F2:9F:15:7E:6E:00:0D:60:EA:81:91 ip=10.0.1.155"),
        vec!["Ido", "chip", "status", "changed:", "<*>", "ip", "=<*>"]
    );
    // A clock time is not one.
    assert_eq!(
        token_texts("at 15:31:25"),
        vec!["at", "<*>", ":<*>", ":<*>"]
    );
}

#[test]
fn shared_prefixes_and_suffixes_of_values_stay_constant() {
    let cases = [
        ("=true", "=3", Some("=<*>")),
        ("storage1", "storage7", Some("storage<*>")),
        ("(<*>.example.net)", "(<*>.other.com)", Some("(<*>)")),
        ("()", "(host)", Some("(<*>)")),
        ("Resumed", "Started", None),
        ("ee0", "alt0", None),
        ("abc", "abd", None),
        // Host names differ as a whole.
        ("host-a.corp.example.com", "host-b.corp.example.com", None),
    ];
    for (a, b, want) in cases {
        assert_eq!(common_affix(a, b).as_deref(), want, "{a} {b}");
    }
}

#[test]
fn adjacent_parameters_are_written_as_one() {
    for (t, want) in [
        ("at <*> <*> <*>:<*>:<*> <*>", "at <*>"),
        ("time: <*>.<*>", "time: <*>"),
        ("<*><*>x <*>.<*>.<*>", "<*>x <*>"),
        ("a <*>  <*>", "a <*>  <*>"),
    ] {
        assert_eq!(canonical(t.to_string()), want, "{t}");
    }
}

#[test]
fn drain_groups_and_generalises() {
    let mut m = TemplateMiner::new(&TemplateConfig::default());
    let a = m.add("Received block blk_1 of size 67108864 from /10.251.42.84");
    let b = m.add("Received block blk_2 of size 3 from /10.251.42.85");
    assert!(a.created);
    assert!(!b.created);
    assert_eq!(a.template_id, b.template_id);
    assert_eq!(
        m.template_text(a.template_id).as_deref(),
        Some("Received block blk_<*> of size <*> from /<*>")
    );
    // Different constant words, same length: a different template.
    let c = m.add("Deleting block blk_1 file /a/b/blk_1");
    assert_ne!(c.template_id, a.template_id);
    // A word that differs in a similar line starts a template of its own (`VM Paused`,
    // `VM Resumed`) until the position has taken four distinct words (Brain's threshold);
    // then it is a parameter and the templates kept apart join the first one.
    let d = m.add("session opened for user root by uid 0");
    let e = m.add("session opened for user news by uid 0");
    assert_ne!(d.template_id, e.template_id);
    assert_eq!(
        m.template_text(e.template_id).as_deref(),
        Some("session opened for user news by uid <*>")
    );
    let f = m.add("session opened for user cyrus by uid 0");
    assert_ne!(f.template_id, d.template_id);
    assert_eq!(m.len(), 5);
    let g = m.add("session opened for user test by uid 0");
    assert_eq!(g.template_id, d.template_id);
    for id in [d, e, f, g].map(|x| x.template_id) {
        assert_eq!(
            m.template_text(id).as_deref(),
            Some("session opened for user <*> by uid <*>")
        );
    }
    assert_eq!(
        m.add("session opened for user news by uid 7").template_id,
        d.template_id
    );
    // A token that differs only in its numbers is no other word (`bglio716`, `bglio91`).
    let h = m.add("NFS mount failed on bglio716, slept 15 seconds");
    let i = m.add("NFS mount failed on bglio91, slept 15 seconds");
    assert_eq!(h.template_id, i.template_id);
    assert_eq!(m.len(), 4);
    assert_eq!(m.template_text(999), None);
}

#[test]
fn key_values_generalise_and_whitespace_is_kept() {
    let mut m = TemplateMiner::new(&TemplateConfig::default());
    // A message without spaces is cut into keys and values; a number is a parameter, a word
    // value is kept until its key has taken four distinct words (Brain's threshold).
    template_of(&mut m, "sync ready=true,policy=3,mode=fast,owner=alice");
    assert_eq!(
        template_of(&mut m, "sync ready=true,policy=4,mode=fast,owner=bob"),
        "sync ready=true,policy=<*>,mode=fast,owner=bob"
    );
    template_of(&mut m, "sync ready=true,policy=5,mode=fast,owner=carol");
    assert_eq!(
        template_of(&mut m, "sync ready=true,policy=6,mode=fast,owner=dave"),
        "sync ready=true,policy=<*>,mode=fast,owner=<*>"
    );
    assert_eq!(
        template_of(&mut m, "sync ready=true,policy=5,mode=fast,owner=bob"),
        "sync ready=true,policy=<*>,mode=fast,owner=<*>"
    );
    assert_eq!(
        template_of(&mut m, "sync ready=false,policy=7,mode=fast,owner=erin"),
        "sync ready=false,policy=<*>,mode=fast,owner=erin"
    );
    assert_eq!(
        template_of(&mut m, "boot  (command 2116)"),
        "boot  (command <*>)"
    );
    assert_eq!(
        template_of(&mut m, "Expiring session 0x15, timeout of 5000ms exceeded"),
        "Expiring session <*>, timeout of <*>ms exceeded"
    );
}

#[test]
fn optional_parameters_share_a_template() {
    let mut m = TemplateMiner::new(&TemplateConfig::default());
    let a =
        m.add("proxy.example.com:5070 close, 403 bytes sent, 426 bytes received, lifetime 00:01");
    let b = m.add(
        "proxy.example.com:5070 close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 KB) received, lifetime <1 sec",
    );
    assert_eq!(a.template_id, b.template_id);
    assert!(!b.created);
    assert_eq!(
        m.template_text(a.template_id).as_deref(),
        Some("<*> close, <*> bytes<*>sent, <*> bytes<*>received, lifetime <*>")
    );
    // A constant extra word is not optional: a different template.
    let c = m.add(
        "proxy.example.com:5070 close, 403 bytes sent, 426 bytes received, lifetime 00:01 user=root",
    );
    assert_ne!(c.template_id, a.template_id);
}

#[test]
fn template_ids_and_texts_do_not_depend_on_the_order_of_lines() {
    let lines = [
        "Received block blk_1 of size 67108864 from /10.251.42.84",
        "Received block blk_-2 of size 3 from /10.251.42.85",
        "session opened for user root by (uid=0)",
        "session opened for user root by (uid=1000)",
        "Expiring session 0x15, timeout of 5000ms exceeded",
        "Expiring session 0x9a, timeout of 40000ms exceeded",
        "instance 3c1d-22 state=RUNNING cpu=12.5 mem=1024MB",
        "instance 7a0f-01 state=RUNNING cpu=0.5 mem=512MB",
        "GET /v2/servers/detail HTTP/1.1 status: 200 len: 1893 time: 0.2477829",
        "GET /v2/images/7/detail HTTP/1.1 status: 404 len: 12 time: 1.5",
    ];
    let run = |order: &[usize]| {
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        let ids: Vec<(usize, u64)> = order
            .iter()
            .map(|&i| (i, m.add(lines[i]).template_id))
            .collect();
        let mut by_line: Vec<(usize, u64, String)> = ids
            .into_iter()
            .map(|(i, id)| (i, id, m.template_text(id).unwrap_or_default()))
            .collect();
        by_line.sort();
        by_line
    };
    let forward: Vec<usize> = (0..lines.len()).collect();
    let backward: Vec<usize> = (0..lines.len()).rev().collect();
    let interleaved = [9, 0, 7, 2, 5, 4, 3, 6, 1, 8];
    let a = run(&forward);
    assert_eq!(a, run(&backward));
    assert_eq!(a, run(&interleaved));
    let texts: Vec<&str> = a.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Received block blk_<*> of size <*> from /<*>",
            "Received block blk_<*> of size <*> from /<*>",
            "session opened for user root by (uid=<*>)",
            "session opened for user root by (uid=<*>)",
            "Expiring session <*>, timeout of <*>ms exceeded",
            "Expiring session <*>, timeout of <*>ms exceeded",
            "instance <*> state=RUNNING cpu=<*> mem=<*>MB",
            "instance <*> state=RUNNING cpu=<*> mem=<*>MB",
            "GET <*> status: <*> len: <*> time: <*>",
            "GET <*> status: <*> len: <*> time: <*>",
        ]
    );
    // The id is the same in a fresh miner that sees only the second line of each pair.
    let mut fresh = TemplateMiner::new(&TemplateConfig::default());
    for (i, id, _) in &a {
        if i % 2 == 1 {
            assert_eq!(fresh.add(lines[*i]).template_id, *id, "{}", lines[*i]);
        }
    }
    assert_eq!(template_key(0xab), "00000000000000ab");
    // A miner seeded with the template texts (parameters as `0`, as a learned dictionary is
    // loaded) gives the lines the same ids.
    let mut seeded = TemplateMiner::new(&TemplateConfig::default());
    for (i, id, text) in &a {
        let seed = seeded.add(&text.replace(WILDCARD_TEXT, "0")).template_id;
        assert_eq!(seed, *id, "{text}");
        assert_eq!(seeded.add(lines[*i]).template_id, seed, "{}", lines[*i]);
    }
}

#[test]
fn least_recently_used_templates_are_evicted() {
    let cfg = TemplateConfig {
        max_templates: 3,
        ..TemplateConfig::default()
    };
    let mut m = TemplateMiner::new(&cfg);
    let ids: Vec<u64> = ["alpha one", "beta two three", "gamma four five six"]
        .iter()
        .map(|l| m.add(l).template_id)
        .collect();
    // Touch 1 and 3; adding a fourth evicts 2 (least recently used).
    m.add("alpha one");
    m.add("gamma four five six");
    m.add("delta seven eight nine ten");
    assert_eq!(m.len(), 3);
    assert_eq!(m.evicted(), 1);
    assert_eq!(m.template_text(ids[1]), None);
    assert_eq!(m.template_text(ids[0]).as_deref(), Some("alpha one"));
    // Seen again, it is created anew, with the same id.
    let again = m.add("beta two three");
    assert!(again.created);
    assert_eq!(again.template_id, ids[1]);
}

#[test]
fn interner_compaction_keeps_templates() {
    let cfg = TemplateConfig {
        max_interned: 1000,
        max_templates: 10,
        ..TemplateConfig::default()
    };
    let mut m = TemplateMiner::new(&cfg);
    let keep = m.add("steady state message here").template_id;
    for i in 0..3000 {
        // Distinct constant words grow the interner past its bound.
        m.add(&format!("w{}x{} unique words", i, "abcdefgh"));
        m.add("steady state message here");
    }
    assert!(m.interner.len() <= 1000 + 8);
    assert_eq!(m.add("steady state message here").template_id, keep);
    assert_eq!(
        m.template_text(keep).as_deref(),
        Some("steady state message here")
    );
}

#[test]
fn long_lines_are_bounded_and_dates_masked() {
    let mut m = TemplateMiner::new(&TemplateConfig::default());
    let line = (0..500)
        .map(|i| if i % 2 == 0 { "alpha" } else { "beta" })
        .collect::<Vec<_>>()
        .join(" ");
    let t = m.add(&line);
    let text = m.template_text(t.template_id).unwrap_or_default();
    assert_eq!(text.split(' ').count(), 128);
    assert!(text.ends_with("<*>"));
    let a = m.add("connection from 1.2.3.4 () at Fri Jun 17 07:07:00 2005");
    let b = m.add("connection from 1.2.3.5 () at Sun Jul 10 12:00:01 2005");
    assert_eq!(a.template_id, b.template_id);
    assert_eq!(
        m.template_text(a.template_id).as_deref(),
        Some("connection from <*> () at <*>")
    );
}
