//! What to rewrite: rules that select functions and say which transform rewrites them.

use std::collections::HashSet;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::callname::CallName;
use crate::transform::{self, Options, Transform};
use crate::EngineError;

/// Which functions of a module a rule applies to.
#[derive(Debug, Clone)]
pub enum FunctionSelector {
    /// Qualname globs: `.` separates levels, `*` matches within one level, `**` any depth.
    Globs(QualnameGlobs),
    /// Exactly one function: its qualname and the line of its `def` (or first decorator), as in
    /// `co_firstlineno`.
    At {
        /// `__qualname__` of the function.
        qualname: String,
        /// `co_firstlineno` of the function.
        line: u32,
    },
}

/// A compiled set of qualname globs.
#[derive(Debug, Clone)]
pub struct QualnameGlobs {
    set: GlobSet,
    /// Built from the empty list: every name matches (without asking `set`, which would build
    /// a path per name).
    all: bool,
}

impl QualnameGlobs {
    /// Compiles dotted globs; the empty list selects every function.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, EngineError> {
        let mut builder = GlobSetBuilder::new();
        if patterns.is_empty() {
            builder.add(dotted_glob("**")?);
        }
        for p in patterns {
            let p = p.as_ref();
            builder.add(dotted_glob(p)?);
            // `a.**` also matches `a` itself: `**` is "any depth", zero included.
            if let Some(parent) = p.strip_suffix(".**") {
                builder.add(dotted_glob(parent)?);
            }
        }
        let set = builder.build().map_err(|e| EngineError::BadGlob {
            pattern: patterns
                .iter()
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
            reason: e.to_string(),
        })?;
        Ok(Self {
            set,
            all: patterns.is_empty(),
        })
    }

    /// Whether a dotted name matches any of the globs.
    pub fn matches(&self, dotted: &str) -> bool {
        self.all || self.set.is_match(dotted.replace('.', "/"))
    }
}

/// Compiles one dotted glob (`.` as the level separator) into a globset glob.
pub fn dotted_glob(pattern: &str) -> Result<globset::Glob, EngineError> {
    let bad = |reason: String| EngineError::BadGlob {
        pattern: pattern.to_owned(),
        reason,
    };
    if pattern.is_empty() {
        return Err(bad("empty pattern".to_owned()));
    }
    if pattern.contains('/') || pattern.contains('\\') {
        return Err(bad(
            "'/' and '\\' are not allowed; levels are separated by '.'".to_owned(),
        ));
    }
    if pattern.split('.').any(str::is_empty) {
        return Err(bad(
            "empty level (leading, trailing or doubled '.')".to_owned()
        ));
    }
    for level in pattern.split('.') {
        if level.contains("**") && level != "**" {
            return Err(bad(format!("'**' must be a whole level, found {level:?}")));
        }
    }
    GlobBuilder::new(&pattern.replace('.', "/"))
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map_err(|e| bad(e.kind().to_string()))
}

/// Which calls a rule wraps.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Skip calls whose callee is a plain builtin name not rebound by the module or function.
    pub ignore_builtins: bool,
    /// Calls whose name matches one of these are not wrapped.
    pub blacklist: Vec<CallName>,
    /// When non-empty, only calls whose name matches one of these are wrapped.
    pub whitelist: Vec<CallName>,
}

impl CallFilter {
    /// Builds a filter from entries in the call-name syntax; a blacklist and a whitelist at once
    /// are rejected, as in recompyle.
    pub fn new<S: AsRef<str>>(
        ignore_builtins: bool,
        blacklist: &[S],
        whitelist: &[S],
    ) -> Result<Self, EngineError> {
        if !blacklist.is_empty() && !whitelist.is_empty() {
            return Err(EngineError::BlacklistAndWhitelist);
        }
        let parse = |list: &[S]| -> Result<Vec<CallName>, EngineError> {
            list.iter().map(|e| CallName::parse(e.as_ref())).collect()
        };
        Ok(Self {
            ignore_builtins,
            blacklist: parse(blacklist)?,
            whitelist: parse(whitelist)?,
        })
    }

    /// Whether a call with this name passes the black/white list (builtins are checked apart).
    pub fn allows(&self, name: Option<&CallName>) -> bool {
        if !self.whitelist.is_empty() {
            return name.is_some_and(|n| self.whitelist.iter().any(|p| p.matches(n)));
        }
        !name.is_some_and(|n| self.blacklist.iter().any(|p| p.matches(n)))
    }
}

/// One rule: which functions, which transform (with its options), which calls.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The functions it selects.
    pub functions: FunctionSelector,
    /// What it does to them, built from its options.
    transform: Arc<dyn Transform>,
    /// Which of their calls (for transforms that route calls).
    pub filter: CallFilter,
}

impl Rule {
    /// A rule applying the registered transform `transform` (see [`crate::transform_names`]) with
    /// `options`; an unknown transform or option is an error naming it.
    pub fn new(
        transform: &str,
        options: &Options,
        functions: FunctionSelector,
        filter: CallFilter,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            functions,
            transform: transform::build(transform, options)?,
            filter,
        })
    }

    /// The registry name of the rule's transform.
    pub fn transform_name(&self) -> &'static str {
        self.transform.name()
    }

    pub(crate) fn transform(&self) -> &dyn Transform {
        self.transform.as_ref()
    }

    /// A rule with a transform that is not registered (tests of the pipeline).
    #[cfg(test)]
    pub(crate) fn with_transform(
        functions: FunctionSelector,
        transform: Arc<dyn Transform>,
    ) -> Self {
        Self {
            functions,
            transform,
            filter: CallFilter::default(),
        }
    }
}

/// The default global name of the call binder (see [`Plan::bind`]).
pub const DEFAULT_BIND: &str = "__callweave_bind__";

/// The default prefix of constant slot names (see [`Plan::constants`]).
pub const DEFAULT_CONSTANTS: &str = "__callweave_k_";

/// Everything a rewrite needs besides the source.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rules in order; where several rules route one call, the first is innermost.
    pub rules: Vec<Rule>,
    /// Names that count as builtins for `ignore_builtins` (the running Python's `builtins`).
    pub builtins: HashSet<String>,
    /// Global name of the call binder, used for calls with `*` or `**` arguments only:
    /// `f(*a)` routed as `OUTER(PRE..., f, POST..., *a)` is written
    /// `BIND(k, OUTER, PRE..., f, POST...)(*a)`, `k` being `f`'s index among the arguments
    /// after `OUTER`. `BIND` returns a callable standing for `f` (its `__qualname__`,
    /// `__name__` and `__module__` are `f`'s) that calls `OUTER(PRE..., f, POST..., *a)`.
    /// The call keeps the user's argument shape, so the errors CPython raises while unpacking
    /// the arguments (`f() got multiple values for keyword argument 'a'`, `f() argument after
    /// * must be an iterable`) name `f`, not `OUTER`.
    pub bind: String,
    /// Prefix of constant slot names (see [`crate::ConstantSlot`]): slot `n` of a rewrite is
    /// named `{constants}{n}__`. It must start with `__` and hold identifier characters only.
    pub constants: String,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            builtins: HashSet::new(),
            bind: DEFAULT_BIND.to_owned(),
            constants: DEFAULT_CONSTANTS.to_owned(),
        }
    }
}

/// Whether `name` is a valid injected name: an identifier starting and ending with `__`.
fn valid_injected_name(name: &str) -> bool {
    name.len() > 4
        && name.starts_with("__")
        && name.ends_with("__")
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Plan {
    /// Checks the injected names of every rule, the binder's name and the constant slots'
    /// prefix.
    pub fn validate(&self) -> Result<(), EngineError> {
        let names = self.rules.iter().flat_map(|r| r.transform.injected_names());
        for name in names.chain(std::iter::once(self.bind.as_str())) {
            if !valid_injected_name(name) {
                return Err(EngineError::BadInjectedName {
                    name: name.to_owned(),
                });
            }
        }
        if !valid_injected_name(&format!("{}0__", self.constants)) {
            return Err(EngineError::BadInjectedName {
                name: self.constants.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualname_globs() {
        let g = QualnameGlobs::new(&["Session.*", "*.place_*", "outer.<locals>.inner", "a.**.z"])
            .expect("valid");
        assert!(g.matches("Session.request"));
        assert!(!g.matches("Session.request.<locals>.f"));
        assert!(g.matches("Shop.place_order"));
        assert!(!g.matches("place_order"));
        assert!(g.matches("outer.<locals>.inner"));
        assert!(g.matches("a.z"));
        assert!(g.matches("a.b.c.z"));
        let pkg = QualnameGlobs::new(&["shop.**"]).expect("valid");
        assert!(pkg.matches("shop") && pkg.matches("shop.api") && pkg.matches("shop.a.b"));
        assert!(!pkg.matches("shopping"));
        let all = QualnameGlobs::new::<&str>(&[]).expect("valid");
        assert!(all.matches("anything.<locals>.deep"));
    }

    #[test]
    fn bad_globs_name_the_pattern() {
        for bad in ["", "a..b", ".a", "a/b", "a**", "a.[b"] {
            let err = QualnameGlobs::new(&[bad]).expect_err(bad);
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn the_binder_name_is_checked_like_injected_names() {
        assert!(Plan::default().validate().is_ok());
        assert_eq!(Plan::default().bind, DEFAULT_BIND);
        for bad in ["bind", "__b", "__a-b__", ""] {
            let plan = Plan {
                bind: bad.to_owned(),
                ..Plan::default()
            };
            let err = plan.validate().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn black_and_white_lists() {
        assert!(matches!(
            CallFilter::new(false, &["a"], &["b"]),
            Err(EngineError::BlacklistAndWhitelist)
        ));
        let f = CallFilter::new(false, &["log.*"], &[]).expect("valid");
        assert!(!f.allows(CallName::parse("log.info").ok().as_ref()));
        let f = CallFilter::new(false, &["a[*]"], &[]).expect("valid");
        assert!(!f.allows(CallName::parse("a[0]").ok().as_ref()));
        assert!(f.allows(CallName::parse("b").ok().as_ref()));
        assert!(f.allows(None));
        let w = CallFilter::new::<&str>(false, &[], &["b"]).expect("valid");
        assert!(!w.allows(None));
        assert!(w.allows(CallName::parse("b").ok().as_ref()));
    }
}
