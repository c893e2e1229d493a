//! Python bindings of the rewrite engine: rules, the rewrite result, and code-object
//! position remapping.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use callweave_engine::exits::{self, FlowOps, HandlerOps};
use callweave_engine::linetable;
use callweave_engine::posmap::MapCursor;
use callweave_engine::{
    rewrite, CallFilter, ConstantSlot as EngineSlot, EngineError, Function as EngineFunction,
    FunctionSelector, OptionValue, Options, Plan, PositionMap, Profiled as EngineProfiled,
    QualnameGlobs, Rewrite, Rule as EngineRule, Site as EngineSite, DEFAULT_BIND,
    DEFAULT_CONSTANTS,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyTuple};

use crate::errors::{to_py, RewriteError};

/// A rule: which functions of a module, which transform (with its options), and which calls.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Rule {
    inner: EngineRule,
}

fn selector(
    functions: Option<Vec<String>>,
    at: Option<(String, u32)>,
) -> PyResult<FunctionSelector> {
    match (functions, at) {
        (Some(_), Some(_)) => Err(PyValueError::new_err(
            "give either 'functions' globs or 'at', not both",
        )),
        (_, Some((qualname, line))) => Ok(FunctionSelector::At { qualname, line }),
        (functions, None) => Ok(FunctionSelector::Globs(
            QualnameGlobs::new(&functions.unwrap_or_default()).map_err(to_py)?,
        )),
    }
}

fn filter(
    ignore_builtins: bool,
    blacklist: Option<Vec<String>>,
    whitelist: Option<Vec<String>>,
) -> PyResult<CallFilter> {
    CallFilter::new(
        ignore_builtins,
        &blacklist.unwrap_or_default(),
        &whitelist.unwrap_or_default(),
    )
    .map_err(to_py)
}

/// Converts a Python options dict: values are `str`, `bool` or a list of `str`; `None`
/// leaves the option out (its default applies).
fn options(transform: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
    let mut out = Options::new();
    let Some(options) = options else {
        return Ok(out);
    };
    for (k, v) in options.iter() {
        let key: String = k.extract().map_err(|_| {
            PyTypeError::new_err(format!("transform {transform:?}: option names must be str"))
        })?;
        let value = if v.is_none() {
            continue;
        } else if let Ok(b) = v.cast::<PyBool>() {
            OptionValue::Bool(b.is_true())
        } else if let Ok(s) = v.extract::<String>() {
            OptionValue::Str(s)
        } else if let Ok(l) = v.extract::<Vec<String>>() {
            OptionValue::List(l)
        } else {
            return Err(PyTypeError::new_err(format!(
                "transform {transform:?}: option {key:?} must be a str, a bool or a list of str, not {}",
                v.get_type().name()?
            )));
        };
        out.insert(key, value);
    }
    Ok(out)
}

#[pymethods]
impl Rule {
    /// A rule applying the registered transform `transform` (see `TRANSFORMS`) with
    /// `options` to the functions selected by `functions` (qualname globs; all when omitted)
    /// or `at` (`(qualname, co_firstlineno)`); for transforms that route calls, the call
    /// filter says which calls. An unknown transform or option is a `ValueError` naming it.
    #[new]
    #[pyo3(signature = (transform, options=None, *, functions=None, at=None, ignore_builtins=false, blacklist=None, whitelist=None))]
    fn new(
        transform: &str,
        options: Option<&Bound<'_, PyDict>>,
        functions: Option<Vec<String>>,
        at: Option<(String, u32)>,
        ignore_builtins: bool,
        blacklist: Option<Vec<String>>,
        whitelist: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let opts = self::options(transform, options)?;
        Ok(Self {
            inner: EngineRule::new(
                transform,
                &opts,
                selector(functions, at)?,
                filter(ignore_builtins, blacklist, whitelist)?,
            )
            .map_err(to_py)?,
        })
    }

    /// The registry name of the rule's transform.
    #[getter]
    fn transform(&self) -> &'static str {
        self.inner.transform_name()
    }

    /// Whether the rule selects a function with this qualname (glob rules only).
    fn selects(&self, qualname: &str) -> bool {
        match &self.inner.functions {
            FunctionSelector::Globs(g) => g.matches(qualname),
            FunctionSelector::At { qualname: q, .. } => q == qualname,
        }
    }
}

/// Dotted-name globs (`.` separates levels, `*` one level, `**` any depth), for module names
/// and qualnames.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct DottedGlobs {
    inner: QualnameGlobs,
    patterns: Vec<String>,
}

#[pymethods]
impl DottedGlobs {
    /// Compiles `patterns`; a bad pattern is a `ValueError` naming it and the reason.
    #[new]
    fn new(patterns: Vec<String>) -> PyResult<Self> {
        if patterns.is_empty() {
            return Err(PyValueError::new_err("at least one glob is needed"));
        }
        Ok(Self {
            inner: QualnameGlobs::new(&patterns).map_err(to_py)?,
            patterns,
        })
    }

    /// Whether `name` matches any of the globs.
    fn matches(&self, name: &str) -> bool {
        self.inner.matches(name)
    }

    /// The patterns as given.
    #[getter]
    fn patterns(&self) -> Vec<String> {
        self.patterns.clone()
    }

    fn __repr__(&self) -> String {
        format!("DottedGlobs({:?})", self.patterns)
    }
}

/// A site's fields, texts owned (the engine's [`EngineSite`] keeps ranges of its rewrite's
/// strings instead).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SiteFields {
    id: u32,
    function: std::sync::Arc<str>,
    line: u32,
    end_line: u32,
    col: u32,
    end_col: u32,
    text: String,
    callee: Option<String>,
    awaited: bool,
}

impl SiteFields {
    /// The fields of `site`, one of `rewrite`'s sites; `original` is the source it rewrote.
    fn of(site: &EngineSite, rewrite: &Rewrite, original: &str) -> Self {
        Self {
            id: site.id,
            function: site.function.clone(),
            line: site.line,
            end_line: site.end_line,
            col: site.col,
            end_col: site.end_col,
            text: site.text(original).to_owned(),
            callee: rewrite.callee(site).map(str::to_owned),
            awaited: site.awaited,
        }
    }
}

/// One routed call of a rewrite, in original coordinates.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Site {
    inner: SiteFields,
}

#[pymethods]
impl Site {
    /// A site from its fields (as `row()` gives them): for sites kept in a cache.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u32,
        function: &str,
        line: u32,
        end_line: u32,
        col: u32,
        end_col: u32,
        text: String,
        callee: Option<String>,
        awaited: bool,
    ) -> Self {
        Self {
            inner: SiteFields {
                id,
                function: function.into(),
                line,
                end_line,
                col,
                end_col,
                text,
                callee,
                awaited,
            },
        }
    }

    /// Index in the site table (what `SITES[i]` refers to).
    #[getter]
    fn id(&self) -> u32 {
        self.inner.id
    }

    /// Qualname of the innermost function or class holding the call.
    #[getter]
    fn function(&self) -> &str {
        &self.inner.function
    }

    /// Line of the call's start (1-based).
    #[getter]
    fn line(&self) -> u32 {
        self.inner.line
    }

    /// Line of the call's end.
    #[getter]
    fn end_line(&self) -> u32 {
        self.inner.end_line
    }

    /// Column of the call's start (0-based, UTF-8 bytes).
    #[getter]
    fn col(&self) -> u32 {
        self.inner.col
    }

    /// Column of the call's end.
    #[getter]
    fn end_col(&self) -> u32 {
        self.inner.end_col
    }

    /// The call's exact original text.
    #[getter]
    fn text(&self) -> &str {
        &self.inner.text
    }

    /// The callee's dotted call name, if it has one.
    #[getter]
    fn callee(&self) -> Option<&str> {
        self.inner.callee.as_deref()
    }

    /// Whether the call is the operand of `await`.
    #[getter]
    fn awaited(&self) -> bool {
        self.inner.awaited
    }

    /// The fields as a tuple `(id, function, line, end_line, col, end_col, text, callee,
    /// awaited)`: the import hook's cache format, and what `Site(*row)` takes back.
    fn row<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let s = &self.inner;
        site_row(py, s, &s.text, s.callee.as_deref())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let s = &self.inner;
        (
            s.id,
            &*s.function,
            s.line,
            s.end_line,
            s.col,
            s.end_col,
            &s.text,
            &s.callee,
            s.awaited,
        )
            .hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "Site(id={}, function={:?}, line={}, end_line={}, col={}, end_col={}, text={:?}, callee={:?}, awaited={})",
            s.id, &*s.function, s.line, s.end_line, s.col, s.end_col, s.text, s.callee, s.awaited
        )
    }
}

/// The numbers and the owner every kind of site has: `(id, function, line, end_line, col,
/// end_col, awaited)`.
trait SiteNumbers {
    fn numbers(&self) -> (u32, &str, u32, u32, u32, u32, bool);
}

/// [`SiteNumbers`] for site types with those fields (the same names in each).
macro_rules! site_numbers {
    ($($site:ty),*) => {$(
        impl SiteNumbers for $site {
            fn numbers(&self) -> (u32, &str, u32, u32, u32, u32, bool) {
                let s = self;
                (s.id, &s.function, s.line, s.end_line, s.col, s.end_col, s.awaited)
            }
        }
    )*};
}

site_numbers!(SiteFields, EngineSite);

/// A site's fields as a tuple (see `Site.row`), given its text and callee.
fn site_row<'py>(
    py: Python<'py>,
    s: &impl SiteNumbers,
    text: &str,
    callee: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (id, function, line, end_line, col, end_col, awaited) = s.numbers();
    (
        id, function, line, end_line, col, end_col, text, callee, awaited,
    )
        .into_pyobject(py)
}

/// A numbered function's entry (flat profiling): its index, the rule that numbered it and the
/// site ids of its routed calls in the order of their local index.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Profiled {
    inner: EngineProfiled,
}

#[pymethods]
impl Profiled {
    /// The index passed to the entry callable.
    #[getter]
    fn index(&self) -> u32 {
        self.inner.index
    }

    /// Index of the rule that numbered it.
    #[getter]
    fn rule(&self) -> usize {
        self.inner.rule
    }

    /// Site ids of its timed calls, in the order of their local index.
    #[getter]
    fn sites(&self) -> Vec<u32> {
        self.inner.sites.clone()
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "Profiled(index={}, rule={}, sites={:?})",
            p.index, p.rule, p.sites
        )
    }
}

/// A function some rule selected, with its text before and after the rewrite.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct RewrittenFunction {
    inner: EngineFunction,
    /// The function's original text, first decorator to end of body.
    original_text: String,
    /// The same function in the new source.
    new_text: String,
}

#[pymethods]
impl RewrittenFunction {
    /// `__qualname__`.
    #[getter]
    fn qualname(&self) -> &str {
        &self.inner.qualname
    }

    /// `co_firstlineno`: the first decorator's line, else the `def` line.
    #[getter]
    fn first_line(&self) -> u32 {
        self.inner.first_line
    }

    /// The `def` line.
    #[getter]
    fn def_line(&self) -> u32 {
        self.inner.def_line
    }

    /// Indexes of the rules that selected it.
    #[getter]
    fn rules(&self) -> Vec<usize> {
        self.inner.rules.clone()
    }

    /// Present when a rule that numbers functions (`profile`) selected it.
    #[getter]
    fn profile(&self) -> Option<Profiled> {
        self.inner
            .profile
            .as_ref()
            .map(|p| Profiled { inner: p.clone() })
    }

    /// The function's original text, first decorator to end of body.
    #[getter]
    fn original_text(&self) -> &str {
        &self.original_text
    }

    /// The same function in the new source.
    #[getter]
    fn new_text(&self) -> &str {
        &self.new_text
    }

    fn __repr__(&self) -> String {
        let f = &self.inner;
        format!(
            "RewrittenFunction(qualname={:?}, first_line={}, def_line={}, rules={:?}, profile={:?})",
            f.qualname, f.first_line, f.def_line, f.rules, f.profile
        )
    }
}

/// A constant slot: a name the rewrite put in place of a node of the original source, whose
/// value the caller computes and substitutes for the name's loads after compiling.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct ConstantSlot {
    inner: EngineSlot,
}

#[pymethods]
impl ConstantSlot {
    /// The injected name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The registry name of the transform that took it.
    #[getter]
    fn transform(&self) -> &'static str {
        self.inner.transform
    }

    /// Index of the rule (in the list passed to `rewrite`) that took it.
    #[getter]
    fn rule(&self) -> usize {
        self.inner.rule
    }

    /// The node's exact original text.
    #[getter]
    fn text(&self) -> &str {
        &self.inner.text
    }

    /// Line of the node's start (1-based).
    #[getter]
    fn line(&self) -> u32 {
        self.inner.line
    }

    /// Column of the node's start (0-based, UTF-8 bytes).
    #[getter]
    fn col(&self) -> u32 {
        self.inner.col
    }

    /// Line of the node's end.
    #[getter]
    fn end_line(&self) -> u32 {
        self.inner.end_line
    }

    /// Column of the node's end.
    #[getter]
    fn end_col(&self) -> u32 {
        self.inner.end_col
    }

    /// Qualname of the selected function whose body holds the node.
    #[getter]
    fn function(&self) -> &str {
        &self.inner.function
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "ConstantSlot(name={:?}, transform={:?}, rule={}, text={:?}, line={}, col={}, end_line={}, end_col={}, function={:?})",
            c.name, c.transform, c.rule, c.text, c.line, c.col, c.end_line, c.end_col, &*c.function
        )
    }
}

/// The result of a rewrite.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Rewritten {
    inner: Rewrite,
    /// The source it rewrote (sites and functions keep ranges of it).
    original: String,
}

#[pymethods]
impl Rewritten {
    /// The rewritten source.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether any function was selected.
    #[getter]
    fn changed(&self) -> bool {
        self.inner.changed()
    }

    /// The site table: every routed call, indexed by site id.
    #[getter]
    fn sites(&self) -> Vec<Site> {
        self.inner
            .sites
            .iter()
            .map(|s| Site {
                inner: SiteFields::of(s, &self.inner, &self.original),
            })
            .collect()
    }

    /// Every selected function, in source order.
    #[getter]
    fn functions(&self) -> Vec<RewrittenFunction> {
        self.inner
            .functions
            .iter()
            .map(|f| RewrittenFunction {
                inner: f.clone(),
                original_text: f.original_text(&self.original).to_owned(),
                new_text: self.inner.new_text(f).to_owned(),
            })
            .collect()
    }

    /// Every selected function as `(qualname, first_line, rules, profile)`, in source order,
    /// `profile` being None or `(index, rule, sites)`: the fields the import hook caches,
    /// without building a `RewrittenFunction` (and copying its texts) per function.
    fn function_rows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.inner
            .functions
            .iter()
            .map(|f| {
                let profile = match &f.profile {
                    Some(p) => (p.index, p.rule, p.sites.as_slice())
                        .into_pyobject(py)?
                        .into_any(),
                    None => py.None().into_bound(py),
                };
                (&*f.qualname, f.first_line, f.rules.as_slice(), profile).into_pyobject(py)
            })
            .collect()
    }

    /// `[site.row() for site in self.sites]`, without building the `Site` objects.
    fn site_rows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.inner
            .sites
            .iter()
            .map(|s| site_row(py, s, s.text(&self.original), self.inner.callee(s)))
            .collect()
    }

    /// Constant slots the transforms took, in the order of their numbers.
    #[getter]
    fn constants(&self) -> Vec<ConstantSlot> {
        self.inner
            .constants
            .iter()
            .map(|c| ConstantSlot { inner: c.clone() })
            .collect()
    }

    /// Calls in scope left unwrapped (and untimed) because wrapping them would nest brackets
    /// deeper than CPython accepts (a very long call chain).
    #[getter]
    fn unwrapped_for_depth(&self) -> usize {
        self.inner.unwrapped_for_depth
    }

    /// Maps a 1-based line of the new source to the original line.
    fn original_line(&self, line: usize) -> usize {
        self.inner.map.map_line(line)
    }

    /// Returns `code` (and every code object nested in its constants) with the location table
    /// and first line mapped back to the original source. `call_opcodes` are the opcodes of
    /// this Python's call instructions (CALL, PRECALL, CALL_KW, KW_NAMES…) and EXTENDED_ARG
    /// last: CPython may start a method call's location at the method's name.
    ///
    /// The control-flow opcodes (relative jumps forward and backward, returns, instructions
    /// that never fall through, FOR_ITER and how many units past its target it lands,
    /// JUMP_FORWARD and NOP) let the
    /// exits of profiled functions get the lines plain Python gives them (see
    /// `callweave_engine::exits`); without them those exits stay unlocated. `exc_handler`
    /// (PUSH_EXC_INFO, RERAISE, COPY, POP_EXCEPT) lets an exception leave a profiled
    /// function's frame at the instruction that raised, as in plain Python.
    #[pyo3(signature = (code, call_opcodes, extended_arg, *, forward_jumps=None, backward_jumps=None, returns=None, terminators=None, for_iter=None, jump_forward=None, exc_handler=None))]
    #[allow(clippy::too_many_arguments)]
    fn remap_code<'py>(
        &self,
        code: &Bound<'py, PyAny>,
        call_opcodes: &[u8],
        extended_arg: u8,
        forward_jumps: Option<&[u8]>,
        backward_jumps: Option<&[u8]>,
        returns: Option<&[u8]>,
        terminators: Option<&[u8]>,
        for_iter: Option<(u8, usize)>,
        jump_forward: Option<(u8, u8)>,
        exc_handler: Option<(u8, u8, u8, u8)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let flow = returns.map(|returns| FlowOps {
            forward_jumps: forward_jumps.unwrap_or_default(),
            backward_jumps: backward_jumps.unwrap_or_default(),
            returns,
            terminators: terminators.unwrap_or_default(),
            extended_arg,
            for_iter,
            jump_forward,
            handler: exc_handler.map(|(push_exc_info, reraise, copy, pop_except)| HandlerOps {
                push_exc_info,
                reraise,
                copy,
                pop_except,
            }),
        });
        let ops = CallOps {
            call: call_opcodes,
            extended_arg,
            flow,
        };
        remap_code_object(code, &self.inner.map, &ops)
    }
}

struct CallOps<'a> {
    call: &'a [u8],
    extended_arg: u8,
    /// Control-flow opcodes, to locate profiled functions' exits; `None` leaves them as mapped.
    flow: Option<FlowOps<'a>>,
}

impl CallOps<'_> {
    /// For every code unit, whether it belongs to a call instruction: inline cache units
    /// (opcode 0, CACHE) belong to the instruction before them, EXTENDED_ARG to the one after.
    fn call_units(&self, code: &[u8]) -> Vec<bool> {
        let ops: Vec<u8> = code.iter().step_by(2).copied().collect();
        let mut is_call = [false; 256];
        for &op in self.call {
            is_call[usize::from(op)] = true;
        }
        let mut out = vec![false; ops.len()];
        let mut prev = false;
        for i in 0..ops.len() {
            let op = ops.get(i).copied().unwrap_or_default();
            let class = if op == 0 {
                prev
            } else if op == self.extended_arg {
                let next = ops
                    .iter()
                    .skip(i)
                    .find(|&&o| o != self.extended_arg)
                    .copied()
                    .unwrap_or_default();
                is_call[usize::from(next)]
            } else {
                is_call[usize::from(op)]
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = class;
            }
            prev = class;
        }
        out
    }
}

fn remap_code_object<'py>(
    code: &Bound<'py, PyAny>,
    map: &PositionMap,
    ops: &CallOps<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = code.py();
    let code_type = code.get_type();
    let consts = code.getattr(intern!(py, "co_consts"))?;
    let consts = consts.cast::<PyTuple>()?;
    let mut new_consts = Vec::with_capacity(consts.len());
    // Whether a nested code object changed (an unchanged one comes back as itself).
    let mut consts_changed = false;
    for c in consts.iter() {
        if c.get_type().is(&code_type) {
            let remapped = remap_code_object(&c, map, ops)?;
            consts_changed |= !remapped.is(&c);
            new_consts.push(remapped);
        } else {
            new_consts.push(c);
        }
    }
    let table_obj = code.getattr(intern!(py, "co_linetable"))?;
    let table = table_obj.cast::<PyBytes>()?.as_bytes();
    let first: i32 = code.getattr(intern!(py, "co_firstlineno"))?.extract()?;
    let new_first = usize::try_from(first)
        .ok()
        .and_then(|l| i32::try_from(map.map_line(l)).ok())
        .unwrap_or(first);
    let bytecode_obj = code.getattr(intern!(py, "co_code"))?;
    let bytecode = bytecode_obj.cast::<PyBytes>()?.as_bytes();
    let call_units = ops.call_units(bytecode);
    let class_of = |unit: usize| call_units.get(unit).copied().unwrap_or(false);
    // The table's locations come mostly in source order: each is looked up from the last.
    let mut cursor = MapCursor::default();
    let remapped = linetable::remap_entries(table, first, class_of, |loc, is_call| {
        map.map_location_near(&mut cursor, loc, is_call)
    })
    .map_err(|e| RewriteError::new_err(format!("cannot read a location table: {e}")))?;
    let kwargs = PyDict::new(py);
    let mut new_table = None;
    if let Some(flow) = &ops.flow {
        // Only code that lost locations to the map can have a profiled function's exits.
        if remapped.dropped.iter().any(|&d| d) {
            let mut units = remapped.unit_locations();
            let dropped = remapped.unit_dropped();
            let handlers_obj = code.getattr(intern!(py, "co_exceptiontable"))?;
            let mut handlers = handlers_obj.cast::<PyBytes>()?.as_bytes().to_vec();
            let mut new_code = None;
            // First the exception path (it moves no instruction), then the exits.
            if let Some((patched, patched_handlers)) =
                exits::reraise_at_raise(bytecode, &units, &dropped, &handlers, flow)
            {
                // The handler keeps the raising offset under its stack: one more slot.
                let stack: u32 = code.getattr(intern!(py, "co_stacksize"))?.extract()?;
                kwargs.set_item(intern!(py, "co_stacksize"), stack.saturating_add(1))?;
                new_code = Some(patched);
                handlers = patched_handlers;
            }
            let current = new_code.as_deref().unwrap_or(bytecode);
            if let Some((located, located_handlers)) =
                exits::locate_exits(current, &mut units, &dropped, &handlers, flow)
            {
                let entries = linetable::entries_of_units(&units);
                new_table = Some(linetable::encode(&entries, new_first));
                new_code = Some(located);
                handlers = located_handlers;
            }
            if let Some(new_code) = new_code {
                kwargs.set_item(intern!(py, "co_code"), PyBytes::new(py, &new_code))?;
                kwargs.set_item(
                    intern!(py, "co_exceptiontable"),
                    PyBytes::new(py, &handlers),
                )?;
            }
        }
    }
    let new_table = new_table.unwrap_or_else(|| linetable::encode(&remapped.entries, new_first));
    if !consts_changed && kwargs.is_empty() && new_first == first && new_table == table {
        // Nothing to replace (code whose lines no edit touched or moved): the code itself.
        return Ok(code.clone());
    }
    kwargs.set_item(intern!(py, "co_linetable"), PyBytes::new(py, &new_table))?;
    kwargs.set_item(intern!(py, "co_firstlineno"), new_first)?;
    if consts_changed {
        kwargs.set_item(intern!(py, "co_consts"), PyTuple::new(py, new_consts)?)?;
    }
    code.call_method(intern!(py, "replace"), (), Some(&kwargs))
}

/// Rewrites `source` with `rules` (first rule innermost); `builtins` are the names that count
/// as builtins for `ignore_builtins`; `bind` is the global name of the call binder
/// (`bind_call`) that calls with `*` or `**` arguments use; constant slots are named
/// `{constants}{n}__`.
#[pyfunction]
#[pyo3(name = "rewrite", signature = (source, rules, builtins=None, *, bind=DEFAULT_BIND.to_owned(), constants=DEFAULT_CONSTANTS.to_owned()))]
pub(crate) fn py_rewrite(
    py: Python<'_>,
    source: &str,
    rules: Vec<PyRef<'_, Rule>>,
    builtins: Option<HashSet<String>>,
    bind: String,
    constants: String,
) -> PyResult<Rewritten> {
    let plan = Plan {
        rules: rules.iter().map(|r| r.inner.clone()).collect(),
        builtins: builtins.unwrap_or_default(),
        bind,
        constants,
    };
    // The engine is pure Rust and owns nothing of Python's: it runs without the GIL. It bounds
    // its own stack use (any thread's stack will do); a panic would be a bug in it, reported
    // as an error rather than unwound into Python.
    let result = py
        .detach(|| {
            std::panic::catch_unwind(|| rewrite(source, &plan)).unwrap_or_else(|_| {
                Err(EngineError::Internal {
                    reason: "the engine stopped on a bug (panic); the source is left unmodified"
                        .to_owned(),
                })
            })
        })
        .map_err(to_py)?;
    Ok(Rewritten {
        inner: result,
        original: source.to_owned(),
    })
}

/// Decodes source bytes when they are UTF-8 (BOM removed); raises `RewriteError` naming the
/// declared encoding otherwise, so that the caller decodes with Python's codecs.
#[pyfunction]
pub(crate) fn decode_source(bytes: &[u8]) -> PyResult<String> {
    callweave_engine::source::decode(bytes)
        .map(|d| d.text)
        .map_err(to_py)
}
