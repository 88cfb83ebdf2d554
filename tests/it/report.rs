//! `ecs-rollback report`: a real drill's result events rendered as HTML and SVG, then shown in
//! a real headless Chromium (Debian's, installed by `.ci/run`): the browser's DOM holds one bar
//! per step per target, and its screenshot shows each bar in its step's colour where the SVG
//! puts it, and nothing where a target had no step. Without Chromium the browser test says it
//! is skipped, unless `ECS_ROLLBACK_REQUIRE_BROWSER=1` (CI), where that is a failure.

use crate::common::{binary, fast_scenario_file};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    let mut c = binary();
    c.env("ECS_ROLLBACK_SIM_SCENARIO", fast_scenario_file());
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ecs-rollback-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the example drill; returns the JSON lines and, per target, the timeline steps that ran.
fn drill(dir: &Path) -> (PathBuf, BTreeMap<String, Vec<String>>) {
    let out = bin()
        .arg("invoke")
        .arg(root().join("events/drill-report-example.json"))
        .output()
        .expect("invoke");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut expected = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        if v["type"] == "ecs-rollback.drill-summary" {
            continue;
        }
        let target = v["data"]["target"]["diskId"]
            .as_str()
            .or(v["data"]["target"]["instanceId"].as_str())
            .expect("target")
            .to_owned();
        let ran: Vec<String> = v["data"]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter(|s| {
                ["stop", "preserve", "reset", "start"].contains(&s["name"].as_str().unwrap_or(""))
            })
            .filter(|s| s["status"] == "done" || s["status"] == "failed")
            .map(|s| s["name"].as_str().unwrap_or("").to_owned())
            .collect();
        expected.insert(target, ran);
    }
    assert_eq!(expected.len(), 4, "four targets: {text}");
    let path = dir.join("drill.jsonl");
    std::fs::write(&path, &text).expect("write");
    (path, expected)
}

fn render(input: &Path, output: &Path) {
    let out = bin()
        .arg("report")
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bars of an SVG: (target, step, x, y, width, height, fill).
fn bars(svg: &str) -> Vec<(String, String, i64, i64, i64, i64, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        tag.split(&key)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    svg.split("<rect class=\"bar")
        .skip(1)
        .map(|rest| {
            let tag = rest.split('>').next().unwrap_or_default();
            let n = |k: &str| attr(tag, k).parse::<i64>().expect("integer attribute");
            (
                attr(tag, "data-target"),
                attr(tag, "data-step"),
                n("x"),
                n("y"),
                n("width"),
                n("height"),
                attr(tag, "fill"),
            )
        })
        .collect()
}

/// The example drill run and rendered in `dir`: the steps that ran per target, the HTML page,
/// the SVG file and its text.
struct Rendered {
    expected: BTreeMap<String, Vec<String>>,
    html: PathBuf,
    svg: PathBuf,
    svg_text: String,
}

fn drill_rendered(dir: &Path) -> Rendered {
    let (jsonl, expected) = drill(dir);
    let html = dir.join("drill.html");
    let svg = dir.join("drill.svg");
    render(&jsonl, &html);
    render(&jsonl, &svg);
    let svg_text = std::fs::read_to_string(&svg).expect("svg");
    Rendered {
        expected,
        html,
        svg,
        svg_text,
    }
}

#[test]
fn a_drill_renders_one_bar_per_step_per_target_in_html_and_svg() {
    let dir = scratch("files");
    let Rendered {
        expected,
        html,
        svg_text,
        ..
    } = drill_rendered(&dir);
    let found = bars(&svg_text);
    let mut per_target: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (target, step, ..) in &found {
        per_target
            .entry(target.clone())
            .or_default()
            .push(step.clone());
    }
    for (target, steps) in &expected {
        assert_eq!(
            per_target.get(target).cloned().unwrap_or_default(),
            *steps,
            "{target}: one bar per step that ran"
        );
    }
    assert!(found.len() >= 5, "the example drill has bars: {found:?}");
    let html_text = std::fs::read_to_string(&html).expect("html");
    assert_eq!(bars(&html_text), found, "the page holds the same SVG");
    for text in [&html_text, &svg_text] {
        assert!(!text.contains("<script") && !text.contains("href=") && !text.contains("src="));
    }
    // The failures with their codes, the objective, the totals.
    for want in [
        "NotOptedIn",
        "InstanceLockedForSecurity",
        "objective 6 s",
        "4 targets: 2 succeeded, 2 failed",
    ] {
        assert!(html_text.contains(want), "{want}");
    }
    // Garbage in: refused by line, nothing written.
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"type\": \"ecs-rollback.succeeded\", \"data\": {}}\n{oops\n",
    )
    .expect("write");
    let out = bin()
        .arg("report")
        .arg(&bad)
        .arg("-o")
        .arg(dir.join("bad.html"))
        .output()
        .expect("report");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert!(!dir.join("bad.html").exists());
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ECS_ROLLBACK_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn headless(chrome: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chrome);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn hex_rgb(fill: &str) -> [u8; 3] {
    let h = fill.trim_start_matches('#');
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).expect("hex colour");
    [byte(0), byte(2), byte(4)]
}

#[test]
fn the_report_in_a_real_headless_browser() {
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var("ECS_ROLLBACK_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ECS_ROLLBACK_REQUIRE_BROWSER=1 and no Chromium at /usr/bin/chromium (apt-get install chromium)"
        );
        eprintln!("SKIPPED: no Chromium (install Debian's chromium, or set ECS_ROLLBACK_CHROMIUM)");
        return;
    };
    let dir = scratch("browser");
    let Rendered {
        expected,
        html,
        svg,
        svg_text,
    } = drill_rendered(&dir);
    let drawn = bars(&svg_text);

    // The DOM as the browser built it from the HTML page.
    let dom = headless(&chrome, &dir.join("profile-dom"))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium --dump-dom");
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let in_dom = bars(&dom);
    assert_eq!(
        in_dom.len(),
        expected.values().map(Vec::len).sum::<usize>(),
        "one bar per step per target in the browser's DOM"
    );
    for (target, steps) in &expected {
        let mine: Vec<&String> = in_dom
            .iter()
            .filter(|b| &b.0 == target)
            .map(|b| &b.1)
            .collect();
        assert_eq!(mine, steps.iter().collect::<Vec<_>>(), "{target}");
    }

    // The picture: the SVG at its own size, one CSS pixel per device pixel.
    let (w, h) = {
        let dim = |k: &str| -> u32 {
            svg_text
                .split(&format!(" {k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| v.parse().ok())
                .expect("svg size")
        };
        (dim("width"), dim("height"))
    };
    let png_path = dir.join("drill.png");
    let shot = headless(&chrome, &dir.join("profile-shot"))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium --screenshot");
    assert!(
        png_path.exists(),
        "screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).expect("png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let pixel = |x: i64, y: i64| -> [u8; 3] {
        let i = (y as usize * info.width as usize + x as usize) * channels;
        [buf[i], buf[i + 1], buf[i + 2]]
    };
    let colours: Vec<[u8; 3]> = ecs_rollback::drill_report::TIMELINE
        .iter()
        .map(|(_, c)| hex_rgb(c))
        .collect();
    for (target, step, x, y, bw, bh, fill) in &drawn {
        let got = pixel(x + bw / 2, y + bh / 2);
        assert_eq!(
            got,
            hex_rgb(fill),
            "{target} {step}: the bar's colour at its centre ({}, {})",
            x + bw / 2,
            y + bh / 2
        );
    }
    // Rows without steps (refused targets) show no bar colour anywhere on their line.
    let row_ys: BTreeMap<&String, i64> = drawn.iter().map(|b| (&b.0, b.3 + b.5 / 2)).collect();
    let bare: Vec<&String> = expected
        .iter()
        .filter(|(_, s)| s.is_empty())
        .map(|(t, _)| t)
        .collect();
    assert_eq!(bare.len(), 2, "two refused targets");
    // Their rows follow the drawn ones in the order of the results; find them by the label
    // text's row: every row is ROW_H apart from the first.
    let first_y = drawn.iter().map(|b| b.3 + b.5 / 2).min().expect("a bar");
    let rows = expected.len() as i64;
    for r in 0..rows {
        let y = first_y + r * ecs_rollback::drill_report::ROW_H;
        if row_ys.values().any(|v| *v == y) {
            continue;
        }
        for x in ecs_rollback::drill_report::CHART_X
            ..ecs_rollback::drill_report::CHART_X + ecs_rollback::drill_report::CHART_W
        {
            assert!(
                !colours.contains(&pixel(x, y)),
                "no bar on an empty row (y {y}, x {x})"
            );
        }
    }
    // Kept for people to look at.
    let keep = root().join("target").join("drill-report.png");
    let _ = std::fs::copy(&png_path, &keep);
    println!("screenshot: {}", keep.display());
}
