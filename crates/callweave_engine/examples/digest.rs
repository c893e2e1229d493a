//! Digest of every rewrite over a directory of Python files: a check that an engine change
//! leaves all outputs byte-identical.
//!
//! `cargo run --release --example digest -- DIR [TRANSFORM [KEY=VALUE]...]` rewrites every `.py`
//! file under `DIR` (every function selected by one rule: `wrap` by default, every call wrapped,
//! as the `throughput` example does) and prints one hash over every field of each [`Rewrite`]
//! (new source, position map, sites, functions, constants) or over the error.

use std::hash::{DefaultHasher, Hash, Hasher};
mod common;

use std::path::PathBuf;

use callweave_engine::{
    rewrite, source, CallFilter, FunctionSelector, OptionValue, Options, Plan, QualnameGlobs,
    Rewrite, Rule,
};

/// Every output of a rewrite, field by field (`original` is the source it rewrote).
fn fields(r: &Rewrite, original: &str) -> String {
    let mut out = format!("{:?}\n{:?}\n", r.source, r.map);
    for s in &r.sites {
        out += &format!(
            "site {} {:?} {} {} {} {} {:?} {:?} {}\n",
            s.id,
            s.function,
            s.line,
            s.end_line,
            s.col,
            s.end_col,
            s.text(original),
            r.callee(s),
            s.awaited
        );
    }
    for f in &r.functions {
        out += &format!(
            "function {:?} {} {} {:?} {:?} {:?} {:?}\n",
            f.qualname,
            f.first_line,
            f.def_line,
            f.rules,
            f.profile,
            f.original_text(original),
            r.new_text(f)
        );
    }
    out += &format!("{:?} {}", r.constants, r.unwrapped_for_depth);
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: digest DIR [TRANSFORM [KEY=VALUE]...]")?,
    );
    let transform = args.next().unwrap_or_else(|| "wrap".to_owned());
    let mut files = Vec::new();
    common::python_files(&dir, &mut files);
    files.sort();
    let mut options = Options::new();
    if transform == "wrap" {
        options.insert(
            "wrapper".to_owned(),
            OptionValue::Str("__callweave_wrap__".into()),
        );
    }
    // Further options, as strings, or flags for `true` and `false`.
    for arg in args {
        let (key, value) = arg.split_once('=').ok_or("options are KEY=VALUE")?;
        let value = match value {
            "true" => OptionValue::Bool(true),
            "false" => OptionValue::Bool(false),
            v => OptionValue::Str(v.into()),
        };
        options.insert(key.to_owned(), value);
    }
    let plan = Plan {
        rules: vec![Rule::new(
            &transform,
            &options,
            FunctionSelector::Globs(QualnameGlobs::new::<&str>(&[])?),
            CallFilter::default(),
        )?],
        ..Plan::default()
    };
    let mut all = DefaultHasher::new();
    let (mut ok, mut failed) = (0, 0);
    for path in &files {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let Ok(decoded) = source::decode(&bytes) else {
            continue;
        };
        let text = match rewrite(&decoded.text, &plan) {
            Ok(r) => {
                ok += 1;
                fields(&r, &decoded.text)
            }
            Err(e) => {
                failed += 1;
                format!("error: {e:?}")
            }
        };
        path.strip_prefix(&dir).unwrap_or(path).hash(&mut all);
        text.hash(&mut all);
    }
    println!(
        "{transform}: {ok} rewritten, {failed} errors, digest {:016x}",
        all.finish()
    );
    Ok(())
}
