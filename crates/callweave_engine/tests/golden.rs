//! Golden tests: one fixture `.py` per case under `tests/fixtures/<folder>/`, and an `insta`
//! snapshot of its rewrite (new source, then the site table, selected functions and constant
//! slots). The Python suite compiles and runs every fixture too
//! (tests/test_engine_fixtures.py).
//!
//! Every registered transform has a folder named after it, and every folder is either a
//! registered transform's or listed in [`COMPOSITIONS`]: an unknown or missing folder fails.
//! A folder's `rules` file gives the plan, one rule per line: the transform's name, then
//! `option=value` words (`true`/`false` are flags, `[a,b]` a list, anything else a string);
//! `#` starts a comment line. A fixture whose first lines are `# rules: <rule>` comments uses
//! those rules instead. Every rule selects every function.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use callweave_engine::{
    rewrite, source, transform_names, CallFilter, FunctionSelector, OptionValue, Options, Plan,
    QualnameGlobs, Rule,
};

/// Folders that compose several transforms (their `rules` file lists them).
const COMPOSITIONS: &[&str] = &["both"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn all_functions() -> FunctionSelector {
    FunctionSelector::Globs(QualnameGlobs::new::<&str>(&[]).expect("the empty glob list is valid"))
}

fn parse_value(v: &str) -> OptionValue {
    match v {
        "true" => OptionValue::Bool(true),
        "false" => OptionValue::Bool(false),
        _ => match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some("") => OptionValue::List(Vec::new()),
            Some(items) => {
                OptionValue::List(items.split(',').map(|s| s.trim().to_owned()).collect())
            }
            None => OptionValue::Str(v.to_owned()),
        },
    }
}

fn parse_rule(line: &str) -> Rule {
    let mut words = line.split_whitespace();
    let transform = words
        .next()
        .expect("a rule line starts with a transform name");
    let mut options = Options::new();
    for w in words {
        let (k, v) = w.split_once('=').expect("options are option=value");
        options.insert(k.to_owned(), parse_value(v));
    }
    Rule::new(transform, &options, all_functions(), CallFilter::default())
        .map_err(|e| format!("rule {line:?}: {e}"))
        .expect("the rule is valid")
}

fn plan(rules: Vec<Rule>) -> Plan {
    let builtins: HashSet<String> = ["len", "print", "range", "str", "int"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    Plan {
        rules,
        builtins,
        bind: "__b__".into(),
        ..Plan::default()
    }
}

/// The folder's rules, or the fixture's own `# rules:` header lines.
fn rules_for(folder: &Path, text: &str) -> Vec<Rule> {
    let header: Vec<Rule> = text
        .lines()
        .map_while(|l| l.strip_prefix("# rules:"))
        .map(parse_rule)
        .collect();
    if !header.is_empty() {
        return header;
    }
    let file = std::fs::read_to_string(folder.join("rules"))
        .map_err(|e| format!("{}/rules: {e}", folder.display()))
        .expect("the folder has a rules file");
    file.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_rule)
        .collect()
}

fn render(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("fixture is readable");
    let decoded = source::decode(&bytes).expect("fixture decodes");
    let folder = path.parent().expect("a fixture is in a folder");
    let plan = plan(rules_for(folder, &decoded.text));
    let result = rewrite(&decoded.text, &plan).expect("fixture rewrites");
    let mut out = result.source.clone();
    out.push_str("\n# ---- sites: id function line:col-end_line:end_col callee | text\n");
    for s in &result.sites {
        let _ = writeln!(
            out,
            "# {} {} {}:{}-{}:{} {} | {}",
            s.id,
            s.function,
            s.line,
            s.col,
            s.end_line,
            s.end_col,
            result.callee(s).unwrap_or("-"),
            s.text(&decoded.text)
                .replace('\n', "\\n")
                .replace('\r', "\\r"),
        );
    }
    out.push_str("# ---- functions\n");
    for f in &result.functions {
        let _ = writeln!(
            out,
            "# {} first_line={} def_line={} profile={:?}",
            f.qualname, f.first_line, f.def_line, f.profile
        );
    }
    // Only when there are slots, so that transforms taking none keep their snapshots.
    if !result.constants.is_empty() {
        out.push_str(
            "# ---- constants: name transform rule function line:col-end_line:end_col | text\n",
        );
        for c in &result.constants {
            let _ = writeln!(
                out,
                "# {} {} {} {} {}:{}-{}:{} | {}",
                c.name,
                c.transform,
                c.rule,
                c.function,
                c.line,
                c.col,
                c.end_line,
                c.end_col,
                c.text.replace('\n', "\\n").replace('\r', "\\r"),
            );
        }
    }
    out
}

/// The fixture folders, sorted.
fn folders() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .expect("the fixtures folder is readable")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn every_folder_is_a_transform_and_every_transform_has_a_folder() {
    let folders = folders();
    let names = transform_names();
    for f in &folders {
        assert!(
            names.contains(&f.as_str()) || COMPOSITIONS.contains(&f.as_str()),
            "fixture folder {f:?} is neither a registered transform ({names:?}) nor a composition ({COMPOSITIONS:?})"
        );
    }
    for n in &names {
        assert!(
            folders.iter().any(|f| f == n),
            "transform {n:?} has no fixture folder"
        );
    }
}

#[test]
fn golden() {
    for folder in folders() {
        // Snapshots are named `golden__<folder>_fixtures@<file>.snap`.
        let name = format!("{folder}_fixtures");
        insta::glob!("fixtures", &format!("{folder}/*.py"), |path| {
            insta::assert_snapshot!(name.clone(), render(path));
        });
    }
}
