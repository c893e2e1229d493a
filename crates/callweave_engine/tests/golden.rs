//! Golden tests: one fixture `.py` per case under `tests/fixtures/<transform>/`, and an `insta`
//! snapshot of its rewrite (new source, then the site table and selected functions).
//! The Python suite compiles and runs every fixture too (tests/test_engine_fixtures.py).

use std::collections::HashSet;
use std::fmt::Write;

use callweave_engine::{
    rewrite, source, CallFilter, FunctionSelector, Layer, Plan, QualnameGlobs, Rule,
};

fn all_functions() -> FunctionSelector {
    FunctionSelector::Globs(QualnameGlobs::new::<&str>(&[]).expect("the empty glob list is valid"))
}

fn profile_layer() -> Layer {
    Layer::Profile {
        enter: "__e__".into(),
        exit: "__x__".into(),
        timer: "__t__".into(),
        atimer: "__at__".into(),
        record: "__r__".into(),
        pause: "__p__".into(),
        resume: "__rs__".into(),
        strip: "__s__".into(),
    }
}

/// `wrap`: one wrap layer; `profile`: one profile layer; `both`: a wrap layer passing sites
/// (innermost, as the import hook orders them) under a profile layer.
fn plan_for(transform: &str) -> Plan {
    let layers = match transform {
        "wrap" => vec![Layer::Wrap {
            wrapper: "__w__".into(),
            sites: None,
        }],
        "both" => vec![
            Layer::Wrap {
                wrapper: "__w__".into(),
                sites: Some("__ss__".into()),
            },
            profile_layer(),
        ],
        _ => vec![profile_layer()],
    };
    let builtins: HashSet<String> = ["len", "print", "range", "str", "int"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    Plan {
        rules: layers
            .into_iter()
            .map(|layer| Rule {
                functions: all_functions(),
                layer,
                filter: CallFilter::default(),
            })
            .collect(),
        builtins,
        bind: "__b__".into(),
    }
}

fn render(path: &std::path::Path, transform: &str) -> String {
    let bytes = std::fs::read(path).expect("fixture is readable");
    let decoded = source::decode(&bytes).expect("fixture decodes");
    let result = rewrite(&decoded.text, &plan_for(transform)).expect("fixture rewrites");
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
            s.callee.as_deref().unwrap_or("-"),
            s.text.replace('\n', "\\n").replace('\r', "\\r"),
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
    out
}

#[test]
fn wrap_fixtures() {
    insta::glob!("fixtures/wrap/*.py", |path| {
        insta::assert_snapshot!(render(path, "wrap"));
    });
}

#[test]
fn both_fixtures() {
    insta::glob!("fixtures/both/*.py", |path| {
        insta::assert_snapshot!(render(path, "both"));
    });
}

#[test]
fn profile_fixtures() {
    insta::glob!("fixtures/profile/*.py", |path| {
        insta::assert_snapshot!(render(path, "profile"));
    });
}
