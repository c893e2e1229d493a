//! The rewrite pipeline: parse → collect → plan edits → apply → position map and site table.

use std::sync::Arc;

use ruff_python_ast::visitor::source_order::SourceOrderVisitor;
use ruff_python_parser::{parse_unchecked, Mode, ParseOptions, Parsed};
use ruff_text_size::Ranged;

use crate::bindings;
use crate::callname::push_callee;
use crate::collect::{Collector, RoutedCall};
use crate::depth::{self, Nesting};
use crate::plan::{FunctionSelector, Plan};
use crate::posmap::{self, PositionMap};
use crate::source::LineIndex;
use crate::transform::wrap::{call_edits, call_location_start, has_unpacking, simple_wrap_edits};
use crate::transform::{self, BodyOutput, CallSite, ConstantSlot, Context, Layout};
use crate::EngineError;

/// One routed call, in original coordinates (1-based lines, 0-based UTF-8 byte columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Index in the rewrite's site table (what `SITES[i]` refers to).
    pub id: u32,
    /// Qualname of the innermost function or class holding the call.
    pub function: Arc<str>,
    /// Line of the call's start.
    pub line: u32,
    /// Line of the call's end.
    pub end_line: u32,
    /// Column of the call's start.
    pub col: u32,
    /// Column of the call's end.
    pub end_col: u32,
    /// The call's byte range in the original source (the text [`rewrite`] was given): its
    /// exact original text is [`Site::text`].
    pub span: std::ops::Range<u32>,
    /// The callee's dotted call name, if it has one, as a byte range of [`Rewrite::callees`]
    /// (see [`Rewrite::callee`]): one string for all sites, not one per site.
    pub callee: Option<std::ops::Range<u32>>,
    /// Whether the call is the operand of `await`.
    pub awaited: bool,
}

impl Site {
    /// The call's exact original text; `original` is the source the rewrite was made from.
    pub fn text<'s>(&self, original: &'s str) -> &'s str {
        text_at(original, &self.span)
    }
}

/// `text[range]`, empty when the range is not one of `text` (never for a rewrite's own ranges).
fn text_at<'s>(text: &'s str, range: &std::ops::Range<u32>) -> &'s str {
    text.get(range.start as usize..range.end as usize)
        .unwrap_or_default()
}

/// A numbered function's entry in the rewrite (see `Transform::numbers_functions`: flat
/// profiling's functions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiled {
    /// The index passed to the entry callable.
    pub index: u32,
    /// The plan rule that profiles it.
    pub rule: usize,
    /// Site ids of its timed calls, in the order of their local index.
    pub sites: Vec<u32>,
}

/// A function some rule selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// `__qualname__`.
    pub qualname: Arc<str>,
    /// `co_firstlineno`: the first decorator's line, else the `def` line.
    pub first_line: u32,
    /// The `def` line.
    pub def_line: u32,
    /// Indexes of the plan rules that selected it.
    pub rules: Vec<usize>,
    /// Present when a rule whose transform numbers functions (`profile`) selected it.
    pub profile: Option<Profiled>,
    /// The function's byte range in the original source, first decorator to end of body: its
    /// text is [`Function::original_text`]; the same function in the new source is
    /// [`Rewrite::new_text`].
    pub span: std::ops::Range<u32>,
}

impl Function {
    /// The function's original text, first decorator to end of body; `original` is the source
    /// the rewrite was made from.
    pub fn original_text<'s>(&self, original: &'s str) -> &'s str {
        text_at(original, &self.span)
    }
}

/// The result of a rewrite.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The new source: the original with small fragments inserted or replaced.
    pub source: String,
    /// Maps positions in `source` back to the original.
    pub map: PositionMap,
    /// Every routed call.
    pub sites: Vec<Site>,
    /// The sites' callee names, one after another (see [`Site::callee`]).
    pub callees: String,
    /// Every selected function.
    pub functions: Vec<Function>,
    /// Constant slots taken by the transforms, in the order of their numbers.
    pub constants: Vec<ConstantSlot>,
    /// Calls in scope left unwrapped because wrapping them would nest the new source's brackets
    /// deeper than CPython accepts (see [`crate::depth`]); they run, untimed and unwrapped.
    pub unwrapped_for_depth: usize,
}

impl Rewrite {
    /// Whether anything was changed.
    pub fn changed(&self) -> bool {
        !self.functions.is_empty()
    }

    /// The callee's dotted call name of `site` (one of this rewrite's sites), if it has one.
    pub fn callee(&self, site: &Site) -> Option<&str> {
        site.callee.as_ref().map(|r| text_at(&self.callees, r))
    }

    /// The text of `function` (one of this rewrite's functions) in the new source: looked up
    /// in the position map on demand, as few callers need it.
    pub fn new_text(&self, function: &Function) -> &str {
        let (start, end) = self
            .map
            .new_range(function.span.start as usize, function.span.end as usize);
        self.source.get(start..end).unwrap_or_default()
    }
}

/// Rewrites `source` according to `plan`.
///
/// Safe on any thread: the parser grows its own stack, and [`crate::depth`] bounds the tree
/// before any walk, which then runs on a stack segment of the size that bound needs when the
/// caller's stack has less left.
pub fn rewrite(source: &str, plan: &Plan) -> Result<Rewrite, EngineError> {
    plan.validate()?;
    let parsed = parse_unchecked(source, ParseOptions::from(Mode::Module));
    let nesting = depth::scan(parsed.tokens());
    let Some(parsed) = parsed.try_into_module() else {
        return Err(EngineError::Internal {
            reason: "the parser did not return a module".to_owned(),
        });
    };
    // One line index of the original serves the checks, the plan and the position map.
    let lines = LineIndex::new(source);
    let checked = match parsed.errors().first() {
        Some(e) => {
            let (line, column) = lines.line_col(e.location.start().to_usize());
            Err(EngineError::Parse {
                message: e.error.to_string(),
                line,
                column,
            })
        }
        None => nesting.check(&lines),
    };
    let walk = checked.is_ok();
    let needed = nesting.stack_needed(walk);
    stacker::maybe_grow(needed, needed, move || {
        if let Err(e) = checked {
            dispose(parsed, &nesting);
            return Err(e);
        }
        rewrite_parsed(source, lines, plan, &parsed, &nesting)
    })
}

/// Drops a rejected tree, or leaks it when it is deeper than [`depth::MAX_DROP_DEPTH`]
/// (dropping recurses once per level).
fn dispose(parsed: Parsed<ruff_python_ast::ModModule>, nesting: &Nesting) {
    if nesting.droppable() {
        drop(parsed);
    } else {
        std::mem::forget(parsed);
    }
}

fn rewrite_parsed(
    source: &str,
    lines: LineIndex,
    plan: &Plan,
    parsed: &Parsed<ruff_python_ast::ModModule>,
    nesting: &Nesting,
) -> Result<Rewrite, EngineError> {
    let module = parsed.syntax();
    let mut collector =
        Collector::new(source, &lines, plan, &module.body, nesting, parsed.tokens());
    for stmt in &module.body {
        collector.visit_stmt(stmt);
    }
    let line_u32 = |offset: usize| u32::try_from(lines.line_col(offset).0).unwrap_or(u32::MAX);

    for rule in &plan.rules {
        if let FunctionSelector::At { qualname, line } = &rule.functions {
            let found = collector
                .functions
                .iter()
                .any(|f| *f.qualname == **qualname && first_line(f.def, &line_u32) == *line);
            if !found {
                return Err(EngineError::FunctionNotFound {
                    qualname: qualname.clone(),
                    line: *line,
                });
            }
        }
    }

    // Functions come in source order (a nested one after its parent's name): their lines are
    // looked up from the previous one's (same results as `line_u32`).
    let mut cursor = 0;
    let mut line_near = |offset: usize| {
        u32::try_from(lines.line_col_near(offset, &mut cursor).0).unwrap_or(u32::MAX)
    };
    let mut functions: Vec<Function> = collector
        .functions
        .iter()
        .map(|f| {
            let range = function_range(f.def);
            Function {
                qualname: Arc::clone(&f.qualname),
                first_line: line_near(range.start().to_usize()),
                def_line: line_near(f.def.name.range.start().to_usize()),
                // Moved from the collector once it is done with them (below).
                rules: Vec::new(),
                profile: None,
                span: range.start().to_u32()..range.end().to_u32(),
            }
        })
        .collect();

    // Function-level edits first: at equal offsets, indentation goes before a call's prefix;
    // and inner functions' edits before outer ones' (a nested def ending the outer body puts
    // both footers at one offset, the inner one first). Per transform, the first of its rules
    // selecting a function applies.
    let cx = Context {
        source,
        lines: &lines,
        tokens: parsed.tokens(),
    };
    let mut per_function: Vec<Vec<posmap::Edit<'_>>> = Vec::new();
    let mut next_index = 0u32;
    let mut reindented: Vec<(usize, usize)> = Vec::new();
    // Applied after the call routing's edits at equal offsets (see `FunctionEdits`).
    let mut after_calls = Vec::new();
    // The transforms already applied to the function at hand (one buffer for all functions).
    let mut seen: Vec<&str> = Vec::new();
    for (fidx, f) in collector.functions.iter().enumerate() {
        seen.clear();
        let mut fn_edits_all = Vec::new();
        for &rule in &f.rules {
            let Some(t) = plan.rules.get(rule).map(|r| r.transform()) else {
                continue;
            };
            if seen.contains(&t.name()) {
                continue;
            }
            seen.push(t.name());
            let numbered = t.numbers_functions()
                && functions
                    .get(fidx)
                    .is_some_and(|func| func.profile.is_none());
            let index = next_index;
            let Some(fn_edits) = t.function_edits(&cx, f.def, index)? else {
                if numbered {
                    return Err(EngineError::Internal {
                        reason: format!(
                            "transform {:?} numbers functions without function edits",
                            t.name()
                        ),
                    });
                }
                continue;
            };
            let range = f.def.range();
            let (start, end) = (range.start().to_usize(), range.end().to_usize());
            if reindented.iter().any(|&(s, e)| s < start && end <= e) {
                return Err(EngineError::Unsupported {
                    what: format!("function {:?}", f.qualname),
                    reason: format!(
                        "a {} function nested in a function whose body had to be re-indented",
                        t.name()
                    ),
                });
            }
            if fn_edits.layout == Layout::Reindented {
                reindented.push((start, end));
            }
            fn_edits_all.extend(fn_edits.edits);
            after_calls.extend(fn_edits.after_calls);
            if numbered {
                if let Some(func) = functions.get_mut(fidx) {
                    func.profile = Some(Profiled {
                        index,
                        rule,
                        sites: Vec::new(),
                    });
                }
                next_index += 1;
            }
        }
        if !fn_edits_all.is_empty() {
            per_function.push(fn_edits_all);
        }
    }
    // A routed call takes two edits (three with a lone generator argument): one allocation
    // for the common case.
    let planned = per_function.iter().map(Vec::len).sum::<usize>() + after_calls.len();
    let mut edits = Vec::with_capacity(planned + 2 * collector.calls.len());
    for fn_edits in per_function.into_iter().rev() {
        edits.extend(fn_edits);
    }

    // `W(` for each rule whose calls all get the same prefix: shared by all its calls.
    let simple_prefix: Vec<Option<String>> = plan
        .rules
        .iter()
        .map(|r| r.transform().simple_call_prefix())
        .collect();
    // Asked only for method calls spanning lines: built on first use.
    let module_imports = std::cell::OnceCell::new();
    let imported = |name: &str| {
        module_imports
            .get_or_init(|| bindings::module_imports(&module.body))
            .contains(name)
    };
    let mut sites = Vec::with_capacity(collector.calls.len());
    // Callee names average some 12 bytes.
    let mut callees = String::with_capacity(16 * collector.calls.len());
    let mut line_cursor = 0;
    for (i, routed) in collector.calls.iter().enumerate() {
        let id = u32::try_from(i).unwrap_or(u32::MAX);
        let location_start = call_location_start(routed.call, source, &lines, &imported);
        let unpacking = has_unpacking(routed.call);
        let layers = collector.layers(routed);
        sites.push(make_site(
            source,
            &lines,
            routed,
            id,
            &mut line_cursor,
            &mut callees,
        ));
        if let (false, [(rule, _)]) = (unpacking, layers) {
            if let Some(Some(prefix)) = simple_prefix.get(*rule) {
                simple_wrap_edits(routed.call, prefix, location_start, &mut edits);
                continue;
            }
        }
        let mut tokens = Vec::with_capacity(layers.len());
        for &(rule, fidx) in layers {
            let Some(t) = plan.rules.get(rule).map(|r| r.transform()) else {
                continue;
            };
            let mut local = 0;
            if t.numbers_functions() {
                if let Some(p) = functions.get_mut(fidx).and_then(|f| f.profile.as_mut()) {
                    local = u32::try_from(p.sites.len()).unwrap_or(u32::MAX);
                    p.sites.push(id);
                }
            }
            tokens.push(t.call_layer(CallSite {
                id,
                local,
                awaited: routed.awaited,
            }));
        }
        let bind = unpacking.then_some(plan.bind.as_str());
        edits.extend(call_edits(routed.call, &tokens, location_start, bind));
    }

    edits.extend(after_calls);

    // Statement- and expression-level edits, rule by rule. A transform that includes nested
    // bodies walks a selected function only when no enclosing function is selected by the
    // same rule (the enclosing walk covers it).
    let mut body = BodyOutput {
        edits: Vec::new(),
        slots: Vec::new(),
    };
    for (rule, r) in plan.rules.iter().enumerate() {
        let t = r.transform();
        if !t.visits_body() {
            continue;
        }
        let mine: Vec<_> = collector
            .functions
            .iter()
            .filter(|f| f.rules.contains(&rule))
            .collect();
        for f in &mine {
            let range = f.def.range();
            let covered = t.includes_nested()
                && mine.iter().any(|o| {
                    let or = o.def.range();
                    or.start() < range.start() && range.end() <= or.end()
                });
            if covered {
                continue;
            }
            transform::walk_body(
                &cx,
                t,
                rule,
                f.def,
                Arc::clone(&f.qualname),
                &plan.constants,
                &mut body,
            )?;
        }
    }
    edits.extend(body.edits);
    let constants = body.slots;

    let unwrapped_for_depth = collector.unwrapped_for_depth;
    for (func, selected) in functions.iter_mut().zip(&mut collector.functions) {
        func.rules = std::mem::take(&mut selected.rules);
    }
    drop(collector);
    if functions.is_empty() {
        return Ok(Rewrite {
            source: source.to_owned(),
            map: PositionMap::identity_indexed(source, lines),
            sites,
            callees,
            functions,
            constants,
            unwrapped_for_depth,
        });
    }
    let (new_source, map) = posmap::apply(source, lines, edits)?;
    Ok(Rewrite {
        source: new_source,
        map,
        sites,
        callees,
        functions,
        constants,
        unwrapped_for_depth,
    })
}

/// The site of `routed`; `cursor` is the line cursor of [`LineIndex::line_col_near`] (calls
/// come in source order of their starts, mostly).
fn make_site(
    source: &str,
    lines: &LineIndex,
    routed: &RoutedCall<'_>,
    id: u32,
    cursor: &mut usize,
    callees: &mut String,
) -> Site {
    let range = routed.call.range();
    let (start, end) = (range.start().to_usize(), range.end().to_usize());
    let (line, col) = lines.line_col_near(start, cursor);
    let (end_line, end_col) = lines.line_col_near(end, &mut cursor.clone());
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Site {
        id,
        function: routed.owner.clone(),
        line: to_u32(line),
        end_line: to_u32(end_line),
        col: to_u32(col),
        end_col: to_u32(end_col),
        span: range.start().to_u32()..range.end().to_u32(),
        callee: push_callee(&routed.call.func, source, callees),
        awaited: routed.awaited,
    }
}

/// From the first decorator (or `def`) to the end of the body.
fn function_range(def: &ruff_python_ast::StmtFunctionDef) -> ruff_text_size::TextRange {
    let start = def
        .decorator_list
        .first()
        .map_or(def.range.start(), |d| d.range.start());
    ruff_text_size::TextRange::new(start, def.range.end())
}

fn first_line(def: &ruff_python_ast::StmtFunctionDef, line_of: &impl Fn(usize) -> u32) -> u32 {
    line_of(function_range(def).start().to_usize())
}
