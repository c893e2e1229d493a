//! Lines for the exits of profiled functions.
//!
//! A profiled function runs its body under `try:` … `finally: EXIT(RECORD)`, and the code
//! compiled from that footer carries no location (see `transform::profile`). CPython inlines a
//! copy of the footer before every `return`, the implicit one included, so each of those exits
//! is a run of unlocated instructions ending in a return instruction. Without a location the
//! frame's line at the return event is unknown (`frame.f_lineno` is `None`, pdb shows
//! `--Return--` at `(None)`), where plain Python shows the line the return belongs to: CPython's
//! compiler gives an exit block the location of the instruction that reaches it, copying the
//! block once per jump that reaches it (`duplicate_exits_without_lineno`).
//!
//! [`locate_exits`] does the same after compiling, on the code object:
//! - a run reached only from instructions on one line gets the location of its fall-through
//!   predecessor (else of its first jump): no tracer sees a new line, since every way into
//!   the run is already on that line (3.11 legacy tracing fires a line event when the line of
//!   the executed instruction differs from the previous one's; 3.12+ fires one at a line start
//!   or a jump target only if the line differs from the previous executed instruction's);
//! - every jump from another line gets its own copy of the run, appended after the last
//!   instruction (no offset moves), located like the jump, covered by the same exception-table
//!   entries as the original, and the jump's argument is pointed at it. So does every backward
//!   jump (3.12+ places exception handlers after the exit they return to), which becomes a
//!   forward one: legacy tracing reports a line event for a backward jump even to the same
//!   line, where plain Python's path to its return has no jump back.
//!
//! A run is left without a location when that cannot be done exactly: a predecessor without a
//! location, a jump into its middle or from behind it, an exception handler starting in it, or
//! a retargeted jump whose argument would need more `EXTENDED_ARG` prefixes than it has.
//!
//! The footer's exception path has no line either, and no line fits it statically: plain
//! Python's frame leaves at the instruction that raised, whichever it was. [`reraise_at_raise`]
//! makes that handler put the frame's instruction back at the raising one before the exception
//! leaves, as CPython's own cleanup handlers do with their `lasti` (tracers' `return` event and
//! `f_lineno` after an exception, pdb's `--Return--`).

use crate::linetable::Location;

/// This Python's opcodes, as far as control flow goes. Opcodes are `co_code` bytes.
#[derive(Debug, Clone, Copy)]
pub struct FlowOps<'a> {
    /// Relative jumps forward: target = next instruction (after caches) + arg.
    pub forward_jumps: &'a [u8],
    /// Relative jumps backward: target = next instruction (after caches) - arg.
    pub backward_jumps: &'a [u8],
    /// Instructions that return from the frame (`RETURN_VALUE`, `RETURN_CONST`).
    pub returns: &'a [u8],
    /// Instructions after which execution never falls through (unconditional jumps, raises,
    /// returns).
    pub terminators: &'a [u8],
    /// `EXTENDED_ARG`.
    pub extended_arg: u8,
    /// `FOR_ITER` and how many code units past its target it lands when the iterator is
    /// exhausted (it skips `END_FOR`, and on 3.13 the `POP_TOP` after it), if any.
    pub for_iter: Option<(u8, usize)>,
    /// `JUMP_FORWARD` (no inline cache) and `NOP`: an unconditional backward jump to an exit
    /// (3.12+ places exception handlers after the code they return to) becomes a forward jump
    /// to its copy, its cache units `NOP`s that never run.
    pub jump_forward: Option<(u8, u8)>,
    /// The opcodes of CPython's `try`/`finally` exception handler, to make the injected
    /// footer's handler leave the frame at the raising instruction (see [`reraise_at_raise`]);
    /// `None` leaves handlers as compiled.
    pub handler: Option<HandlerOps>,
}

/// The opcodes CPython's `try`/`finally` exception handler is made of.
#[derive(Debug, Clone, Copy)]
pub struct HandlerOps {
    /// `PUSH_EXC_INFO`: the handler's first instruction.
    pub push_exc_info: u8,
    /// `RERAISE`: ends the handler (argument 0) and its cleanup (argument 1).
    pub reraise: u8,
    /// `COPY`: the cleanup's first instruction (`COPY 3`).
    pub copy: u8,
    /// `POP_EXCEPT`: restores the exception being handled before the handler ran.
    pub pop_except: u8,
}

/// `CACHE` (opcode 0): inline cache units belong to the instruction before them.
const CACHE: u8 = 0;

/// One instruction of `co_code`, in code units.
#[derive(Debug, Clone, Copy)]
struct Instr {
    /// First unit (its first `EXTENDED_ARG` prefix, if any).
    start: usize,
    /// The unit of the opcode itself.
    op_unit: usize,
    /// One past its last cache unit.
    end: usize,
    op: u8,
    arg: u32,
}

impl Instr {
    /// Units of argument bytes (prefixes and the opcode's own).
    fn arg_units(&self) -> usize {
        self.op_unit - self.start + 1
    }
}

fn instructions(code: &[u8], extended_arg: u8) -> Vec<Instr> {
    // Code unit `i` is `(op, arg)`; a trailing odd byte is no unit.
    let unit = |i: usize| -> Option<(u8, u8)> {
        match code.get(2 * i..2 * i + 2) {
            Some(&[op, arg]) => Some((op, arg)),
            _ => None,
        }
    };
    let n = code.len() / 2;
    // Instructions average two or three units with their caches.
    let mut out = Vec::with_capacity(n / 2);
    let mut i = 0;
    while i < n {
        let start = i;
        let mut arg = 0u32;
        while let Some((op, a)) = unit(i) {
            arg = (arg << 8) | u32::from(a);
            if op != extended_arg {
                break;
            }
            i += 1;
        }
        let Some((op, _)) = unit(i) else { break };
        let op_unit = i;
        i += 1;
        while unit(i).is_some_and(|(o, _)| o == CACHE) {
            i += 1;
        }
        out.push(Instr {
            start,
            op_unit,
            end: i,
            op,
            arg,
        });
    }
    out
}

/// One exception-table entry, in code units; `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handler {
    start: usize,
    end: usize,
    target: usize,
    depth_lasti: usize,
}

/// Parses `co_exceptiontable` (CPython's `Objects/exception_handling_notes.txt`): entries of
/// four varints (start, length, target, depth << 1 | lasti), big-endian 6-bit groups with
/// 0x40 marking a continuation; the first byte of an entry has 0x80 set. `None` if malformed.
fn parse_handlers(table: &[u8]) -> Option<Vec<Handler>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < table.len() {
        let start = read_varint(table, &mut pos, true)?;
        let length = read_varint(table, &mut pos, false)?;
        let target = read_varint(table, &mut pos, false)?;
        let depth_lasti = read_varint(table, &mut pos, false)?;
        out.push(Handler {
            start,
            end: start + length,
            target,
            depth_lasti,
        });
    }
    Some(out)
}

/// One exception-table varint at `*pos`; `first` says it must start an entry (0x80).
fn read_varint(table: &[u8], pos: &mut usize, first: bool) -> Option<usize> {
    let mut value = 0usize;
    for n in 0..6 {
        let b = *table.get(*pos)?;
        if (b & 0x80 != 0) != (first && n == 0) {
            return None;
        }
        *pos += 1;
        value = (value << 6) | usize::from(b & 0x3f);
        if b & 0x40 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, value: usize, first: bool) {
    let mut groups = vec![value & 0x3f];
    let mut rest = value >> 6;
    while rest > 0 {
        groups.push(rest & 0x3f);
        rest >>= 6;
    }
    for (n, g) in groups.iter().rev().enumerate() {
        let mut b = *g as u8;
        if n + 1 < groups.len() {
            b |= 0x40;
        }
        if first && n == 0 {
            b |= 0x80;
        }
        out.push(b);
    }
}

fn write_handler(out: &mut Vec<u8>, h: &Handler) {
    write_varint(out, h.start, true);
    write_varint(out, h.end - h.start, false);
    write_varint(out, h.target, false);
    write_varint(out, h.depth_lasti, false);
}

/// A jump and where it goes.
#[derive(Debug, Clone, Copy)]
struct Jump {
    instr: Instr,
    /// The unit after the jump and its caches: relative arguments count from there.
    base: usize,
    /// The target as `dis` shows it.
    target: usize,
    /// Where execution continues (the target, or past it for `FOR_ITER`'s skip).
    lands: usize,
    forward: bool,
}

fn jumps(instrs: &[Instr], ops: &FlowOps<'_>) -> Vec<Jump> {
    // Per opcode: 1 a forward jump, 2 a backward one (a table: one look-up per instruction).
    let mut kind = [0u8; 256];
    for &op in ops.backward_jumps {
        kind[usize::from(op)] = 2;
    }
    for &op in ops.forward_jumps {
        kind[usize::from(op)] = 1;
    }
    instrs
        .iter()
        .filter_map(|&instr| {
            let base = instr.end;
            let arg = instr.arg as usize;
            let (target, forward) = match kind[usize::from(instr.op)] {
                1 => (base + arg, true),
                2 => (base.checked_sub(arg)?, false),
                _ => return None,
            };
            let skip = match ops.for_iter {
                Some((op, skip)) if op == instr.op => skip,
                _ => 0,
            };
            Some(Jump {
                instr,
                base,
                target,
                lands: target + skip,
                forward,
            })
        })
        .collect()
}

/// What to do with one exit run.
struct Plan {
    /// The run's units `start..end` get `loc`.
    start: usize,
    end: usize,
    loc: Location,
    /// Jumps to point at a copy of `copy_from..end`, located like the jump (the units before
    /// `start` keep their own locations).
    copies: Vec<(Jump, usize)>,
}

/// Gives the exit runs of a code object locations (see the module documentation).
///
/// `code` is `co_code`, `locations` the location of every code unit (as remapped) and
/// `dropped` whether the remapping took that unit's location away (only such runs are
/// touched: CPython's own unlocated code stays as it is). On success with changes, returns
/// the new `co_code` and `co_exceptiontable`, and `locations` has been updated (and extended
/// for appended copies); `None` when nothing changed (`locations` untouched).
pub fn locate_exits(
    code: &[u8],
    locations: &mut Vec<Option<Location>>,
    dropped: &[bool],
    exception_table: &[u8],
    ops: &FlowOps<'_>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let units = code.len() / 2;
    if locations.len() != units || dropped.len() != units {
        return None;
    }
    let ours = |i: &Instr| injected(i, locations, dropped);
    // Cheap test first: most code objects have no dropped return.
    let instrs = instructions(code, ops.extended_arg);
    if !instrs
        .iter()
        .any(|i| ops.returns.contains(&i.op) && ours(i))
    {
        return None;
    }
    let handlers = parse_handlers(exception_table)?;
    let jumps = jumps(&instrs, ops);

    let mut plans = Vec::new();
    let mut run_first: Option<usize> = None;
    for (n, instr) in instrs.iter().enumerate() {
        if !ours(instr) {
            run_first = None;
            continue;
        }
        let first = *run_first.get_or_insert(n);
        if ops.returns.contains(&instr.op) {
            run_first = None;
            let prev = first.checked_sub(1).and_then(|p| instrs.get(p));
            let run = instrs.get(first..=n).unwrap_or_default();
            if let Some(plan) = plan_run(run, prev, &jumps, &handlers, locations, ops) {
                plans.push(plan);
            }
        } else if ops.terminators.contains(&instr.op)
            || ops.forward_jumps.contains(&instr.op)
            || ops.backward_jumps.contains(&instr.op)
        {
            // Control leaves the run before its return: not a footer copy.
            run_first = None;
        }
    }
    if plans.is_empty() {
        return None;
    }

    let mut new_code = code.to_vec();
    let mut extra_handlers: Vec<Handler> = Vec::new();
    let mut applied = false;
    for plan in plans {
        // Lay out the copies first: the plan applies only if every jump can reach its copy.
        let mut at = new_code.len() / 2;
        let mut layout = Vec::new();
        for &(jump, copy_from) in &plan.copies {
            let Some(retarget) = retarget(&jump, at, ops) else {
                break;
            };
            layout.push((jump, copy_from, at, retarget));
            at += plan.end - copy_from;
        }
        if layout.len() != plan.copies.len() {
            continue;
        }
        applied = true;
        if let Some(run) = locations.get_mut(plan.start..plan.end) {
            run.fill(Some(plan.loc));
        }
        for (jump, copy_from, at, retarget) in layout {
            let loc = locations.get(jump.instr.op_unit).copied().flatten();
            let bytes = code.get(copy_from * 2..plan.end * 2).unwrap_or_default();
            new_code.extend_from_slice(bytes);
            for u in copy_from..plan.end {
                let own = locations.get(u).copied().flatten();
                locations.push(if u < plan.start { own } else { loc });
                // The copy is protected like the original: same handler, depth and lasti.
                let copied = at + (u - copy_from);
                if let Some(h) = handlers.iter().find(|h| h.start <= u && u < h.end) {
                    match extra_handlers.last_mut() {
                        Some(last)
                            if last.end == copied
                                && last.target == h.target
                                && last.depth_lasti == h.depth_lasti =>
                        {
                            last.end += 1;
                        }
                        _ => extra_handlers.push(Handler {
                            start: copied,
                            end: copied + 1,
                            target: h.target,
                            depth_lasti: h.depth_lasti,
                        }),
                    }
                }
            }
            // The argument's bytes: the prefixes' then the opcode's, big-endian.
            let n = jump.instr.arg_units();
            for k in 0..n {
                let unit = jump.instr.start + k;
                let shift = 8 * (n - 1 - k);
                if let Some(b) = new_code.get_mut(unit * 2 + 1) {
                    *b = ((retarget.arg >> shift) & 0xff) as u8;
                }
            }
            if let Some((op, filler)) = retarget.op {
                if let Some(b) = new_code.get_mut(jump.instr.op_unit * 2) {
                    *b = op;
                }
                for unit in jump.instr.op_unit + 1..jump.instr.end {
                    if let Some(u) = new_code.get_mut(unit * 2..unit * 2 + 2) {
                        u.copy_from_slice(&[filler, 0]);
                    }
                }
            }
        }
    }
    if !applied {
        return None;
    }
    let mut table = exception_table.to_vec();
    for h in &extra_handlers {
        write_handler(&mut table, h);
    }
    Some((new_code, table))
}

/// Whether every unit of `instr` lost its location to the remapping: code injected by the
/// rewrite, as opposed to CPython's own unlocated instructions.
fn injected(instr: &Instr, locations: &[Option<Location>], dropped: &[bool]) -> bool {
    (instr.start..instr.end)
        .all(|u| dropped.get(u) == Some(&true) && locations.get(u) == Some(&None))
}

/// Makes the exception handler of the injected `finally` leave the frame at the instruction
/// that raised, as the frame of the original function does.
///
/// CPython compiles the footer's exception path as
///
/// ```text
/// T: PUSH_EXC_INFO          (handler of the body: depth d, no lasti)
///    <footer>               (unlocated: injected)
///    RERAISE 0              (unlocated: injected; handler C: depth d + 1, lasti)
/// C: COPY 3
///    POP_EXCEPT
///    RERAISE 1              (sets the frame's instruction to the lasti C received)
/// ```
///
/// so an exception leaves the frame with its instruction at `RERAISE 0`: no line, where the
/// frame of the original function is at the instruction that raised (tracers' `return` event,
/// pdb's `--Return--`, `tb_frame.f_lineno`). CPython's `RERAISE n` (n > 0) sets the frame's
/// instruction to the offset `n` slots below the exception before unwinding, and an
/// exception-table entry with the lasti bit pushes that offset under the exception. So:
/// - every entry targeting `T` gets the lasti bit: the body's raising offset `L` goes under
///   the exception, and the handler runs with the stack `L, previous exception, exception`;
/// - `RERAISE 0` becomes `RERAISE 2`: the frame's instruction goes back to `L` (an argument
///   byte, nothing moves), and the exception unwinds from there; C pushes that same `L` as
///   its lasti (the frame's instruction), and its `RERAISE 1` restores it again;
/// - every entry targeting `C` gets one more slot of depth, for `L` under its stack.
///
/// Which handler runs is decided by the executing instruction, not the frame's, so the
/// unwinding takes the same path; tracebacks are made where the exception was raised, and
/// `RERAISE` adds no entry. The frame needs one more stack slot: on `Some`, the caller must
/// raise `co_stacksize` by one.
///
/// Only a handler of exactly that shape whose footer is injected code (`dropped` with no
/// location, as in [`locate_exits`]) and that no jump reaches is changed. Returns the new
/// `co_code` and `co_exceptiontable`, or `None` when nothing changed.
pub fn reraise_at_raise(
    code: &[u8],
    locations: &[Option<Location>],
    dropped: &[bool],
    exception_table: &[u8],
    ops: &FlowOps<'_>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let hops = ops.handler?;
    let units = code.len() / 2;
    if locations.len() != units || dropped.len() != units {
        return None;
    }
    let instrs = instructions(code, ops.extended_arg);
    // Cheap test first: most code objects have no injected footer.
    if !instrs
        .iter()
        .any(|i| i.op == hops.reraise && i.arg == 0 && injected(i, locations, dropped))
    {
        return None;
    }
    let mut handlers = parse_handlers(exception_table)?;
    let jumps = jumps(&instrs, ops);
    let at = |unit: usize| instrs.iter().position(|i| i.start == unit);

    let mut targets: Vec<usize> = handlers.iter().map(|h| h.target).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut new_code = code.to_vec();
    let mut changed = false;
    for t in targets {
        let Some(first) = at(t) else { continue };
        let Some(push) = instrs.get(first).filter(|i| i.op == hops.push_exc_info) else {
            continue;
        };
        // The footer: injected straight-line code up to its `RERAISE 0`.
        let mut reraise = None;
        for instr in instrs.get(first + 1..).unwrap_or_default() {
            if !injected(instr, locations, dropped) {
                break;
            }
            if instr.op == hops.reraise {
                reraise = Some(*instr);
                break;
            }
            if ops.terminators.contains(&instr.op)
                || ops.returns.contains(&instr.op)
                || ops.forward_jumps.contains(&instr.op)
                || ops.backward_jumps.contains(&instr.op)
            {
                break;
            }
        }
        let Some(reraise) = reraise else { continue };
        if reraise.arg != 0 || reraise.arg_units() != 1 || reraise.start == push.end {
            continue;
        }
        let span = push.start..reraise.end;
        if jumps
            .iter()
            .any(|j| span.contains(&j.target) || span.contains(&j.lands))
        {
            continue;
        }
        // T's entries: one depth, no lasti yet.
        let into_t: Vec<&Handler> = handlers.iter().filter(|h| h.target == t).collect();
        let Some(t_depth_lasti) = into_t.first().map(|h| h.depth_lasti) else {
            continue;
        };
        if t_depth_lasti & 1 != 0 || into_t.iter().any(|h| h.depth_lasti != t_depth_lasti) {
            continue;
        }
        // The cleanup C protects the footer (one more slot, with lasti), and nothing else.
        let Some(c) = handlers
            .iter()
            .find(|h| h.start <= reraise.op_unit && reraise.op_unit < h.end)
            .map(|h| (h.target, h.depth_lasti))
        else {
            continue;
        };
        if c.1 != t_depth_lasti + 3
            || handlers
                .iter()
                .any(|h| h.target == c.0 && (h.start < span.start || h.end > span.end))
        {
            continue;
        }
        let Some(cleanup) = at(c.0).and_then(|n| instrs.get(n..n + 3)) else {
            continue;
        };
        let shape = [(hops.copy, 3), (hops.pop_except, 0), (hops.reraise, 1)];
        if !cleanup
            .iter()
            .zip(shape)
            .all(|(i, (op, arg))| i.op == op && i.arg == arg)
        {
            continue;
        }
        let Some(arg) = new_code.get_mut(reraise.op_unit * 2 + 1) else {
            continue;
        };
        *arg = 2;
        for h in &mut handlers {
            if h.target == t {
                h.depth_lasti |= 1;
            } else if h.target == c.0 {
                h.depth_lasti += 2;
            }
        }
        changed = true;
    }
    if !changed {
        return None;
    }
    let mut table = Vec::with_capacity(exception_table.len());
    for h in &handlers {
        write_handler(&mut table, h);
    }
    Some((new_code, table))
}

/// How a jump is pointed at a copy of its target starting at unit `copy_at`.
struct Retarget {
    /// The new argument.
    arg: usize,
    /// A new opcode, and the opcode that fills the old one's cache units.
    op: Option<(u8, u8)>,
}

/// How `jump` reaches a copy at `copy_at` (after all the code), if its argument bytes can hold
/// the distance.
fn retarget(jump: &Jump, copy_at: usize, ops: &FlowOps<'_>) -> Option<Retarget> {
    let (base, op) = if jump.forward {
        (jump.base, None)
    } else if ops.terminators.contains(&jump.instr.op) {
        let (jump_forward, nop) = ops.jump_forward?;
        (jump.instr.op_unit + 1, Some((jump_forward, nop)))
    } else {
        return None;
    };
    let arg = copy_at.checked_sub(base)?;
    let bits = 8 * jump.instr.arg_units();
    (bits >= usize::BITS as usize || arg >> bits == 0).then_some(Retarget { arg, op })
}

/// The plan for the exit run `run` (whole instructions, the last a return) whose previous
/// instruction in code order is `prev`, or `None` to leave it without a location.
fn plan_run(
    run: &[Instr],
    prev: Option<&Instr>,
    jumps: &[Jump],
    handlers: &[Handler],
    locations: &[Option<Location>],
    ops: &FlowOps<'_>,
) -> Option<Plan> {
    let start = run.first()?.start;
    let end = run.last()?.end;
    if handlers.iter().any(|h| (start..end).contains(&h.target)) {
        return None;
    }
    let loc_of = |i: &Instr| locations.get(i.op_unit).copied().flatten();
    let mut into: Vec<(Jump, Location)> = Vec::new();
    for jump in jumps {
        let hits = (start..end).contains(&jump.lands) || (start..end).contains(&jump.target);
        if !hits {
            continue;
        }
        if jump.lands != start || jump.target > start {
            return None;
        }
        into.push((*jump, loc_of(&jump.instr)?));
    }
    let fall = match prev {
        Some(p) if !ops.terminators.contains(&p.op) && !ops.returns.contains(&p.op) => {
            Some(loc_of(p)?)
        }
        _ => None,
    };
    let loc = fall.or_else(|| into.first().map(|(_, l)| *l))?;
    let copies = into
        .into_iter()
        .filter(|(jump, l)| l.line != loc.line || !jump.forward)
        .map(|(jump, _)| (jump, jump.target))
        .collect();
    Some(Plan {
        start,
        end,
        loc,
        copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: FlowOps<'static> = FlowOps {
        forward_jumps: &[114, 110],
        backward_jumps: &[140],
        returns: &[83],
        terminators: &[83, 110, 140, 130, 119],
        extended_arg: 144,
        for_iter: None,
        jump_forward: Some((110, 9)),
        handler: Some(HandlerOps {
            push_exc_info: 35,
            reraise: 119,
            copy: 120,
            pop_except: 89,
        }),
    };

    fn at(line: i32) -> Option<Location> {
        Some(Location {
            line,
            end_line: line,
            col: Some(4),
            end_col: Some(9),
        })
    }

    #[test]
    fn exception_table_roundtrips() {
        let handlers = [
            Handler {
                start: 3,
                end: 70,
                target: 5000,
                depth_lasti: 3,
            },
            Handler {
                start: 1 << 20,
                end: (1 << 20) + 1,
                target: 0,
                depth_lasti: 0,
            },
        ];
        let mut table = Vec::new();
        for h in &handlers {
            write_handler(&mut table, h);
        }
        assert_eq!(parse_handlers(&table), Some(handlers.to_vec()));
        assert_eq!(parse_handlers(&[0x01]), None);
        assert_eq!(parse_handlers(&[0x81, 0x42]), None);
    }

    #[test]
    fn an_exit_reached_from_two_lines_is_copied_for_the_jump() {
        // 0: jump-if to 2 (line 2); 1: line 3, falls through; 2-3: dropped footer + return.
        let code = [114, 1, 100, 0, 100, 0, 83, 0];
        let mut locs = vec![at(2), at(3), None, None];
        let dropped = [false, false, true, true];
        let (new_code, table) =
            locate_exits(&code, &mut locs, &dropped, &[], &OPS).expect("changed");
        assert_eq!(new_code, [114, 3, 100, 0, 100, 0, 83, 0, 100, 0, 83, 0]);
        assert!(table.is_empty());
        assert_eq!(locs, [at(2), at(3), at(3), at(3), at(2), at(2)]);
    }

    #[test]
    fn a_backward_jump_becomes_a_forward_jump_to_a_protected_copy() {
        // 0: line 2; 1-2: dropped footer + return (protected by a handler at 5);
        // 3: cold code on line 2 jumping back (with one cache unit); 5: handler.
        let code = [100, 0, 100, 0, 83, 0, 140, 4, 0, 0, 119, 0];
        let mut locs = vec![at(2), None, None, at(2), at(2), at(7)];
        let dropped = [false, true, true, false, false, false];
        let mut handlers = Vec::new();
        write_handler(
            &mut handlers,
            &Handler {
                start: 0,
                end: 3,
                target: 5,
                depth_lasti: 1,
            },
        );
        let (new_code, table) =
            locate_exits(&code, &mut locs, &dropped, &handlers, &OPS).expect("changed");
        // JUMP_FORWARD over its old cache (now a NOP) to unit 6.
        assert_eq!(
            new_code,
            [100, 0, 100, 0, 83, 0, 110, 2, 9, 0, 119, 0, 100, 0, 83, 0]
        );
        assert_eq!(
            locs,
            [at(2), at(2), at(2), at(2), at(2), at(7), at(2), at(2)]
        );
        let parsed = parse_handlers(&table).expect("parses");
        assert_eq!(
            parsed.last(),
            Some(&Handler {
                start: 6,
                end: 8,
                target: 5,
                depth_lasti: 1
            })
        );
    }

    /// A body raising on line 2 under the injected `finally`'s handler (3.12's opcodes):
    /// 0-1 body, 2 `PUSH_EXC_INFO`, 3-5 the footer (injected) ending in `RERAISE 0`,
    /// 6-8 the cleanup `COPY 3; POP_EXCEPT; RERAISE 1`.
    fn raising_body() -> (Vec<u8>, Vec<Option<Location>>, Vec<bool>, Vec<Handler>) {
        let code = vec![
            124, 0, 130, 1, 35, 0, 124, 1, 1, 0, 119, 0, 120, 3, 89, 0, 119, 1,
        ];
        let locs = vec![at(2), at(2), None, None, None, None, None, None, None];
        let dropped = vec![false, false, false, true, true, true, false, false, false];
        let handlers = vec![
            Handler {
                start: 0,
                end: 2,
                target: 2,
                depth_lasti: 0,
            },
            Handler {
                start: 2,
                end: 6,
                target: 6,
                depth_lasti: 3,
            },
        ];
        (code, locs, dropped, handlers)
    }

    fn table(handlers: &[Handler]) -> Vec<u8> {
        let mut out = Vec::new();
        for h in handlers {
            write_handler(&mut out, h);
        }
        out
    }

    #[test]
    fn the_injected_handler_reraises_at_the_raising_instruction() {
        let (code, locs, dropped, handlers) = raising_body();
        let (new_code, new_table) =
            reraise_at_raise(&code, &locs, &dropped, &table(&handlers), &OPS).expect("changed");
        // `RERAISE 0` becomes `RERAISE 2`; nothing else in the code changes.
        let mut expected = code.clone();
        expected[11] = 2;
        assert_eq!(new_code, expected);
        // The body's entry pushes the raising offset (lasti); the cleanup keeps it below.
        assert_eq!(
            parse_handlers(&new_table),
            Some(vec![
                Handler {
                    start: 0,
                    end: 2,
                    target: 2,
                    depth_lasti: 1
                },
                Handler {
                    start: 2,
                    end: 6,
                    target: 6,
                    depth_lasti: 5
                },
            ])
        );
    }

    #[test]
    fn other_handlers_are_left_as_compiled() {
        let (code, locs, dropped, handlers) = raising_body();
        let t = table(&handlers);
        // The user's own `finally` (located footer).
        let located: Vec<_> = locs.iter().map(|l| l.or(at(3))).collect();
        assert_eq!(reraise_at_raise(&code, &located, &dropped, &t, &OPS), None);
        // Another cleanup.
        let mut other = code.clone();
        other[13] = 2;
        assert_eq!(reraise_at_raise(&other, &locs, &dropped, &t, &OPS), None);
        // A body entry that already pushes lasti, or a cleanup of another depth.
        let mut lasti = handlers.clone();
        lasti[0].depth_lasti = 1;
        assert_eq!(
            reraise_at_raise(&code, &locs, &dropped, &table(&lasti), &OPS),
            None
        );
        let mut deeper = handlers.clone();
        deeper[1].depth_lasti = 5;
        assert_eq!(
            reraise_at_raise(&code, &locs, &dropped, &table(&deeper), &OPS),
            None
        );
        // A jump into the handler.
        let mut jumped = code.clone();
        jumped[0] = 114;
        jumped[1] = 2;
        assert_eq!(reraise_at_raise(&jumped, &locs, &dropped, &t, &OPS), None);
        // No handler opcodes given.
        let no_ops = FlowOps {
            handler: None,
            ..OPS
        };
        assert_eq!(reraise_at_raise(&code, &locs, &dropped, &t, &no_ops), None);
    }

    #[test]
    fn unlocated_predecessors_leave_the_exit_alone() {
        let code = [100, 0, 100, 0, 83, 0];
        let mut locs = vec![None, None, None];
        let dropped = [false, true, true];
        assert_eq!(locate_exits(&code, &mut locs, &dropped, &[], &OPS), None);
        assert_eq!(locs, [None, None, None]);
        // CPython's own unlocated return (not dropped by the map) is never touched.
        let mut locs = vec![at(2), None, None];
        assert_eq!(locate_exits(&code, &mut locs, &[false; 3], &[], &OPS), None);
    }
}
