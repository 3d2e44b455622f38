//! The template engine: helpers, scoping, sources (file, relative, HTTP), strictness, cycles,
//! and the example templates rendered to exact text.

use infrakit_core::{Allocation, Attachment, GroupSpec, MemoryMetadata, SpecError};
use infrakit_template::{Engine, Globals, TemplateError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn render(text: &str) -> Result<String, TemplateError> {
    Engine::new().render_str(
        text,
        &json!({"name": "web", "list": ["a", "b", "c"], "n": 7, "empty": "", "nothing": null}),
    )
}

fn ok(text: &str) -> String {
    render(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn files(dir: &Path, entries: &[(&str, &str)]) {
    for (name, body) in entries {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn url_of(p: &Path) -> String {
    url::Url::from_file_path(p).unwrap().to_string()
}

#[test]
fn value_helpers() {
    assert_eq!(ok(r#"{{json list}}"#), r#"["a","b","c"]"#);
    assert_eq!(ok(r#"{{json name}}"#), r#""web""#);
    assert_eq!(
        ok(r#"{{#each (jsonDecode "[1,2]")}}<{{this}}>{{/each}}"#),
        "<1><2>"
    );
    assert_eq!(
        ok(r#"{{yaml (jsonDecode "{\"a\":[1,\"x\"]}")}}"#),
        "a:\n  - 1\n  - x\n"
    );
    assert_eq!(
        ok(
            r#"{{default missing "d"}}|{{default nothing "d"}}|{{default empty "d"}}|{{default name "d"}}"#
        ),
        "d|d|d|web"
    );
    assert_eq!(
        ok(r#"{{#each (split "a,b,,c" ",")}}[{{this}}]{{/each}}"#),
        "[a][b][][c]"
    );
    assert_eq!(ok(r#"{{join list "-"}}"#), "a-b-c");
    assert_eq!(ok(r#"{{join (split "x y" " ") "+"}}"#), "x+y");
    assert_eq!(
        ok(r#"{{#each (lines "one\ntwo")}}{{@index}}={{this}};{{/each}}"#),
        "0=one;1=two;"
    );
    assert_eq!(
        ok(r#"{{index_of list "b"}} {{index_of list "z"}} {{index_of "hello" "ll"}}"#),
        "1 -1 2"
    );
    assert_eq!(
        ok(
            r#"{{add n 3}} {{sub n 10}} {{mul n 2}} {{div n 2}} {{mod n 4}} {{add 1.5 1}} {{sub "5" 3}}"#
        ),
        "10 -3 14 3 3 2.5 2"
    );
    assert_eq!(
        ok(r#"{{#if (gt (sub n 3) 3)}}big{{/if}} {{len list}}"#),
        "big 3"
    );
}

#[test]
fn helper_errors_are_clear() {
    let e = render(r#"{{div n 0}}"#).unwrap_err().to_string();
    assert!(e.contains("div") && e.contains("division by zero"), "{e}");
    let e = render(r#"{{add name 1}}"#).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("not a number"), "{e}");
    let e = render(r#"{{jsonDecode "{nope"}}"#).unwrap_err().to_string();
    assert!(e.contains("jsonDecode"), "{e}");
    let e = render(r#"{{join name ","}}"#).unwrap_err().to_string();
    assert!(e.contains("must be a list"), "{e}");
}

#[test]
fn globals_from_flags_var_and_global() {
    let engine = Engine::new().with_globals(
        Globals::parse([
            "/cluster/name=mystack",
            "/cluster/swarm/size=4",
            "/flag=true",
        ])
        .unwrap(),
    );
    let out = engine
        .render_str(
            r#"{{var "/cluster/name"}} {{sub (var "/cluster/swarm/size") 3}} {{#if (var "/flag")}}on{{/if}} {{var "/unset" "dflt"}}{{global "/cluster/name" "renamed"}} {{var "cluster/name"}}"#,
            &json!({}),
        )
        .unwrap();
    assert_eq!(out, "mystack 1 on dflt renamed");
    let e = engine
        .render_str("line one\n{{var \"/cluster/missing\"}}", &json!({}))
        .unwrap_err();
    match e {
        TemplateError::Render { line, message, .. } => {
            assert_eq!(line, Some(2));
            assert!(message.contains("/cluster/missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn include_has_a_child_scope_and_source_shares_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            (
                "main",
                r#"{{include "inc"}}|{{var "/from/include" "unset"}}|{{source "src"}}|{{var "/from/source" "unset"}}|{{var "/seen/by/include"}}"#,
            ),
            (
                "inc",
                r#"{{global "/from/include" "x"}}inc sees {{var "/top"}}{{global "/seen/by/include" "no"}}"#,
            ),
            ("src", r#"{{global "/from/source" "y"}}src"#),
        ],
    );
    let engine = Engine::new().with_globals(
        Globals::new()
            .with("/top", json!("T"))
            .with("/seen/by/include", json!("yes")),
    );
    let out = engine
        .render_url(&url_of(&dir.path().join("main")), &json!({}))
        .unwrap();
    assert_eq!(out, "inc sees T|unset|src|y|yes");
}

#[test]
fn include_takes_an_optional_context() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            (
                "main",
                r#"{{include "item" (jsonDecode "{\"x\":1}")}} {{include "item" this}}"#,
            ),
            ("item", "x={{x}}"),
        ],
    );
    let out = Engine::new()
        .render_url(&url_of(&dir.path().join("main")), &json!({"x": 2}))
        .unwrap();
    assert_eq!(out, "x=1 x=2");
}

#[test]
fn relative_includes_resolve_against_the_including_template() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            ("top/main.tmpl", r#"main>{{include "sub/a.tmpl"}}"#),
            ("top/sub/a.tmpl", r#"a>{{include "../../lib/b.tmpl"}}"#),
            ("lib/b.tmpl", "b"),
        ],
    );
    let out = Engine::new()
        .render_url(&url_of(&dir.path().join("top/main.tmpl")), &json!({}))
        .unwrap();
    assert_eq!(out, "main>a>b");
    // A plain path works too, and so does an inline template resolved against a base.
    let base = url::Url::from_directory_path(dir.path().join("top")).unwrap();
    assert_eq!(
        Engine::new()
            .render_str_at(r#"{{include "sub/a.tmpl"}}"#, base, &json!({}))
            .unwrap(),
        "a>b"
    );
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving fixed bodies; 404 for anything else.
fn serve(pages: HashMap<&'static str, &'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, body) = match pages.get(path.as_str()) {
                Some(b) => ("200 OK", b.to_string()),
                None => ("404 Not Found", "no such page".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn http_includes_from_a_local_server() {
    let base = serve(HashMap::from([
        (
            "/t/boot.sh",
            r#"boot {{var "/cluster/name"}} {{include "parts/join.sh"}}"#,
        ),
        ("/t/parts/join.sh", r#"join {{include "/abs.sh"}}"#),
        ("/abs.sh", "abs"),
    ]));
    let engine = Engine::new().with_globals(Globals::parse(["/cluster/name=web"]).unwrap());
    let out = engine
        .render_url(&format!("{base}/t/boot.sh"), &json!({}))
        .unwrap();
    assert_eq!(out, "boot web join abs");
    // A local template including over HTTP.
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[(
            "local",
            &format!(r#"local+{{{{include "{base}/abs.sh"}}}}"#),
        )],
    );
    assert_eq!(
        engine
            .render_url(&url_of(&dir.path().join("local")), &json!({}))
            .unwrap(),
        "local+abs"
    );
    // A missing page names the URL and the status.
    let err = engine
        .render_url(&format!("{base}/missing"), &json!({}))
        .unwrap_err();
    assert!(
        matches!(&err, TemplateError::Fetch { url, reason, .. } if url.ends_with("/missing") && reason.contains("404")),
        "{err}"
    );
}

#[test]
fn fetch_and_parse_errors_name_the_url() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            ("main", "ok\n{{include \"nope.sh\"}}"),
            ("bad", "line 1\n{{#if x}}unclosed"),
        ],
    );
    let err = Engine::new()
        .render_url(&url_of(&dir.path().join("main")), &json!({}))
        .unwrap_err();
    assert!(
        matches!(&err, TemplateError::Fetch { url, .. } if url.ends_with("/nope.sh")),
        "{err}"
    );
    assert!(
        !infrakit_core::Classify::is_transient(&err),
        "a missing file is permanent"
    );
    let err = Engine::new()
        .render_url(&url_of(&dir.path().join("bad")), &json!({}))
        .unwrap_err();
    assert!(
        matches!(&err, TemplateError::Parse { url, line: Some(_), .. } if url.ends_with("/bad")),
        "{err}"
    );
    let err = Engine::new()
        .render_url("ftp://example.invalid/x", &json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
}

#[test]
fn strict_mode_names_the_variable_the_url_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            ("main", "#!/bin/sh\necho {{name}}\n{{include \"inner\"}}"),
            ("inner", "one\ntwo\nthree {{missing.field}}"),
        ],
    );
    let main = url_of(&dir.path().join("main"));
    let err = Engine::new()
        .render_url(&main, &json!({"name": "x"}))
        .unwrap_err();
    match &err {
        TemplateError::Render {
            url, line, message, ..
        } => {
            assert!(url.ends_with("/inner"), "{err}");
            assert_eq!(*line, Some(3));
            assert!(message.contains("missing.field"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    let text = Engine::new()
        .render_url(&main, &json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("/main line 2") && text.contains("`name`"),
        "{text}"
    );
}

#[test]
fn include_cycles_are_errors_not_stack_overflows() {
    let dir = tempfile::tempdir().unwrap();
    files(
        dir.path(),
        &[
            ("a", r#"a {{include "b"}}"#),
            ("b", r#"b {{source "c"}}"#),
            ("c", r#"c {{include "a"}}"#),
            ("self", r#"{{include "self"}}"#),
        ],
    );
    let err = Engine::new()
        .render_url(&url_of(&dir.path().join("a")), &json!({}))
        .unwrap_err();
    match &err {
        TemplateError::Cycle { chain } => {
            let names: Vec<&str> = chain
                .iter()
                .map(|u| u.rsplit('/').next().unwrap())
                .collect();
            assert_eq!(names, ["a", "b", "c", "a"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Engine::new().render_url(&url_of(&dir.path().join("self")), &json!({})),
        Err(TemplateError::Cycle { .. })
    ));
}

#[test]
fn metadata_lookups() {
    let md = MemoryMetadata::new(json!({"aws": {"instance": {"private_ip": "10.0.0.5"}}}));
    let engine = Engine::new().with_metadata(Arc::new(md));
    assert_eq!(
        engine
            .render_str(
                r#"ip={{metadata "aws/instance/private_ip"}} az={{metadata "aws/az" "none"}}"#,
                &json!({})
            )
            .unwrap(),
        "ip=10.0.0.5 az=none"
    );
    let err = engine
        .render_str(r#"{{metadata "aws/nope"}}"#, &json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("aws/nope"), "{err}");
    let err = Engine::new()
        .render_str(r#"{{metadata "x"}}"#, &json!({}))
        .unwrap_err();
    assert!(err.to_string().contains("no metadata source"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_async_rendering_inside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    files(dir.path(), &[("t", r#"{{metadata "a/b"}}"#)]);
    let engine = Engine::new().with_metadata(Arc::new(MemoryMetadata::new(json!({"a": {"b": 1}}))));
    assert_eq!(
        engine
            .render_url_async(&url_of(&dir.path().join("t")), &json!({}))
            .await
            .unwrap(),
        "1"
    );
    // Directly on a worker thread too.
    assert_eq!(
        engine
            .render_str(r#"{{metadata "a/b"}}"#, &json!({}))
            .unwrap(),
        "1"
    );
}

#[test]
fn nothing_is_html_escaped() {
    assert_eq!(
        ok(r#"{{json (jsonDecode "{\"a\":\"<&>\"}")}} {{name}} <&>"#),
        r#"{"a":"<&>"} web <&>"#
    );
}

fn example(name: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "examples",
        "templates",
        name,
    ]
    .iter()
    .collect();
    url_of(&p.canonicalize().unwrap())
}

fn seed_globals(role: &str) -> Engine {
    Engine::new().with_globals(
        Globals::parse([
            "/cluster/name=mystack",
            "/cluster/swarm/size=5",
            &format!("/local/role={role}"),
            "/local/ip=10.0.0.2",
            "/cluster/swarm/join/token=SWMTKN-1-xyz",
        ])
        .unwrap(),
    )
}

#[test]
fn the_example_boot_script_renders_exactly() {
    let manager = seed_globals("manager")
        .render_url(&example("boot.sh"), &json!({}))
        .unwrap();
    assert_eq!(
        manager,
        "#!/bin/sh\n\
         # mystack: boot script of manager 10.0.0.2\n\
         set -e\n\
         # state volume for manager 10.0.0.2: /dev/xvdf at /var/lib/docker\n\
         mkdir -p /var/lib/docker\n\
         if ! mount /dev/xvdf /var/lib/docker; then\n\
         \x20 mkfs.ext4 /dev/xvdf && mount /dev/xvdf /var/lib/docker\n\
         fi\n\
         docker swarm join --token SWMTKN-1-xyz 10.0.0.1:2377\n"
    );
    let worker = seed_globals("worker")
        .render_url(&example("boot.sh"), &json!({}))
        .unwrap();
    assert_eq!(
        worker,
        "#!/bin/sh\n# mystack: boot script of worker 10.0.0.2\nset -e\ndocker swarm join --token SWMTKN-1-xyz 10.0.0.1:2377\n"
    );
    let seed = Engine::new()
        .with_globals(
            Globals::parse([
                "/local/role=manager",
                "/local/ip=10.0.0.1",
                "/local/swarm/init=true",
            ])
            .unwrap(),
        )
        .render_url(&example("boot.sh"), &json!({}))
        .unwrap();
    assert!(
        seed.starts_with("#!/bin/sh\n# swarm: boot script of manager 10.0.0.1\n"),
        "{seed}"
    );
    assert!(
        seed.ends_with("docker swarm init --advertise-addr 10.0.0.1\n"),
        "{seed}"
    );
    // Without a join token, a joining node's script is refused, naming the global.
    let err = Engine::new()
        .render_url(&example("boot.sh"), &json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/local/ip") || err.contains("/cluster/swarm/join/token"),
        "{err}"
    );
}

#[test]
fn the_example_groups_render_to_valid_specs() {
    let text = seed_globals("manager")
        .render_url(&example("groups.json"), &json!({}))
        .unwrap();
    let specs: Vec<GroupSpec> = SpecError::parse_json(&text).unwrap();
    for s in &specs {
        s.validate().unwrap();
    }
    let managers = &specs[0];
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    let mut expected = Allocation::logical_ids(ips);
    for (i, ip) in ips.iter().enumerate() {
        expected = expected.with_attachment(
            *ip,
            Attachment::new(format!("mystack-manager-{}", i + 1), "ebs"),
        );
    }
    assert_eq!(managers.allocation, expected);
    assert_eq!(
        specs[1].allocation,
        Allocation::size(2),
        "workers = cluster size 5 - 3 managers"
    );
    assert_eq!(
        specs[1].flavor.properties["JoinAddress"],
        Value::from("10.0.0.1:2377")
    );
}
