//! Engine throughput: parse + plan + edit over a directory of Python files, single thread.
//!
//! `cargo run --release --example throughput -- DIR [ROUNDS]` prints MB/s for parsing alone
//! and for the full rewrite (every function selected, every call wrapped), measured side by
//! side, round by round, over the same files held in memory.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use callweave_engine::{
    rewrite, source, CallFilter, FunctionSelector, OptionValue, Options, Plan, QualnameGlobs, Rule,
};

/// The engine's throughput target, as a fraction of the parser's alone on the same files.
const TARGET: f64 = 0.8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: throughput DIR [ROUNDS]")?);
    let rounds: usize = args.next().map_or(Ok(5), |r| r.parse())?;
    let mut files = Vec::new();
    common::python_files(&dir, &mut files);
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| source::decode(&b).ok().map(|d| d.text))
        .filter(|t| ruff_python_parser::parse_module(t).is_ok())
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let plan = Plan {
        rules: vec![Rule::new(
            "wrap",
            &Options::from([(
                "wrapper".to_owned(),
                OptionValue::Str("__callweave_wrap__".into()),
            )]),
            FunctionSelector::Globs(QualnameGlobs::new::<&str>(&[])?),
            CallFilter::default(),
        )?],
        ..Plan::default()
    };
    let (mut parse_best, mut rewrite_best) = (f64::MAX, f64::MAX);
    let mut sites = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        for text in &texts {
            let parsed = ruff_python_parser::parse_module(text);
            std::hint::black_box(&parsed);
        }
        parse_best = parse_best.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sites = 0;
        for text in &texts {
            let r = rewrite(text, &plan)?;
            sites += r.sites.len();
            std::hint::black_box(&r);
        }
        rewrite_best = rewrite_best.min(t.elapsed().as_secs_f64());
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "{} files, {:.1} MB, {} wrapped calls, best of {} rounds",
        texts.len(),
        mb,
        sites,
        rounds
    );
    println!("parse only:              {:7.1} MB/s", mb / parse_best);
    println!("parse + plan + edit:     {:7.1} MB/s", mb / rewrite_best);
    println!(
        "rewrite / parse time:    {:7.2}x",
        rewrite_best / parse_best
    );
    // Issue 10's target: the engine at no less than 0.8x the parser's own throughput.
    let ratio = parse_best / rewrite_best;
    println!(
        "target engine >= {TARGET:.2}x parser: {ratio:.2}x {}",
        if ratio >= TARGET { "PASS" } else { "FAIL" }
    );
    Ok(())
}
