//! Enforcement of enforce-mode profiles, decided in the kernel before the step has an effect.
//!
//! User space puts each process under an enforce-mode profile in `ENFORCED` (tgid -> slot of
//! the profile's compiled allowlists); its children inherit the slot at fork, here, so no
//! child runs unenforced while user space catches up. The agent itself and PID 1 are never
//! enforced, whatever the table says.
//!
//! Network: the cgroup `sock_addr` hooks (see [`crate::dns`], which shares them) refuse a
//! connect, a UDP send with a destination, or a bind of an enforced process whose destination
//! (or port) its slot does not allow: the syscall fails with `EPERM` and nothing is sent. The
//! refusal is remembered per thread (`NET_DENIED`) so the `sys_exit` record of the same
//! syscall says the kernel blocked it.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_loop, bpf_send_signal},
    macros::{cgroup_sock_addr, map},
    maps::{HashMap, LpmTrie, LruHashMap, lpm_trie::Key},
    programs::SockAddrContext,
};
use monitor_common::{
    FLAG_KILLED, FMODE_CREATED, FMODE_READ, FMODE_WRITE, StrRef,
    config::{DATA_MASK, counter},
    enforce::{
        ACCESS_READ, ACCESS_WRITE, DENY_SHIFT, DENY_TREE_SHIFT, ENFORCED_MAX, EXACT_SHIFT,
        EXCLUDED_SHIFT, INHERIT, KIND_NAME, KIND_PATH, LISTEN_ALLOW_MAX, NET_ALLOW_MAX,
        NET_KEY_FIXED_BITS, NetKey, OPEN_SHIFT, PATH_RULES_MAX, PathKey, TREE_SHIFT, hash_byte,
        listen_key,
    },
};

use crate::{
    emit::Record,
    maps::{agent_tgid, count},
};

/// Processes under enforcement: tgid -> policy, with [`INHERIT`] when children inherit it.
#[map(name = "ENFORCED")]
pub static ENFORCED: HashMap<u32, u32> = HashMap::with_max_entries(ENFORCED_MAX, 0);

/// Each policy's current slot (a policy without one enforces nothing: its profile is gone).
#[map(name = "POLICY_SLOT")]
pub static POLICY_SLOT: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// The serving policy of each start-up policy (filled by user space at load).
#[map(name = "SERVING_POLICY")]
pub static SERVING_POLICY: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// Enforced processes that listened, or whose parent had when they were forked (tgid -> 1):
/// their instance serves, so its start-up allowance is over for them from that syscall on,
/// not only once user space has seen the listen (user space may even write the start-up
/// policy back meanwhile: this map wins).
#[map(name = "LISTENED")]
pub static LISTENED: HashMap<u32, u32> = HashMap::with_max_entries(ENFORCED_MAX, 0);

/// Destinations each slot may connect or send to: (slot, port or 0 for any, network).
#[map(name = "NET_ALLOW")]
pub static NET_ALLOW: LpmTrie<NetKey, u32> = LpmTrie::with_max_entries(NET_ALLOW_MAX, 0);

/// Ports each slot may bind: [`listen_key`].
#[map(name = "LISTEN_ALLOW")]
pub static LISTEN_ALLOW: HashMap<u64, u32> = HashMap::with_max_entries(LISTEN_ALLOW_MAX, 0);

/// Threads whose current syscall a `sock_addr` hook (or a BPF LSM hook, for an open) refused
/// (pid_tgid -> 1), read and cleared by the `sys_exit` network and open handlers (LRU: a
/// refusal nobody reads falls out).
/// The value is the refusal's boot time: a mark older than [`DENIED_FRESH_NS`] is stale (left
/// by a refusal in a syscall no handler reports, e.g. an io_uring open) and does not flag a
/// later failure of the thread.
#[map(name = "NET_DENIED")]
pub static NET_DENIED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// How long a refusal mark stays valid: a refused syscall returns at once (the hooks run
/// before anything that could block).
const DENIED_FRESH_NS: u64 = 100_000_000;

/// What each slot may run, read and write: [`PathKey`] -> access bits.
#[map(name = "PATH_RULES")]
pub static PATH_RULES: HashMap<PathKey, u32> = HashMap::with_max_entries(PATH_RULES_MAX, 0);

/// Seed of the path hashes, random per agent start (set at load).
#[unsafe(no_mangle)]
static HASH_SEED: u64 = 0;

/// `SOCK_DGRAM`.
const SOCK_DGRAM: u32 = 2;

/// The `ENFORCED` value of thread group `tgid`, when it is under enforcement.
#[inline(always)]
fn enforced(tgid: u32) -> Option<u32> {
    if tgid == agent_tgid() || tgid <= 1 {
        return None;
    }
    // SAFETY: a map value read while this program runs (RCU).
    unsafe { ENFORCED.get(tgid) }.copied()
}

/// The slot of thread group `tgid`, when it is under enforcement.
#[inline(always)]
pub fn slot_of(tgid: u32) -> Option<u32> {
    let mut policy = enforced(tgid)? & !INHERIT;
    // SAFETY: as in `enforced` (all three lookups).
    if let Some(serving) = unsafe { SERVING_POLICY.get(policy) }
        && unsafe { LISTENED.get(tgid) }.is_some()
    {
        policy = *serving;
    }
    unsafe { POLICY_SLOT.get(policy) }.copied()
}

/// Enforced process `tgid` listened: it serves from now on.
#[inline(always)]
pub fn listened(tgid: u32) {
    if enforced(tgid).is_some() && LISTENED.insert(tgid, 1, 0).is_err() {
        count(counter::ENFORCE_LOST);
    }
}

/// A new process `child` of `parent`: it inherits the parent's enforcement when the profile
/// says so.
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    let Some(value) = enforced(parent).filter(|v| v & INHERIT != 0) else {
        return;
    };
    if ENFORCED.insert(child, value, 0).is_err() {
        count(counter::ENFORCE_LOST);
    }
    // SAFETY: as in `enforced`.
    if unsafe { LISTENED.get(parent) }.is_some() && LISTENED.insert(child, 1, 0).is_err() {
        count(counter::ENFORCE_LOST);
    }
}

/// Process `tgid` ended.
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = ENFORCED.remove(tgid);
    let _ = LISTENED.remove(tgid);
}

/// Whether `slot` may reach `addr` (IPv6 or IPv4-mapped) port `port`.
#[inline(always)]
fn net_allowed(slot: u32, port: u16, addr: [u8; 16]) -> bool {
    let full = NET_KEY_FIXED_BITS + 128;
    NET_ALLOW
        .get(Key::new(full, NetKey::new(slot, port, addr)))
        .is_some()
        || NET_ALLOW
            .get(Key::new(full, NetKey::new(slot, 0, addr)))
            .is_some()
}

/// The destination of a `sock_addr` hook, read once for the DNS and the enforcement sides.
pub struct Destination {
    /// Host order.
    pub port: u16,
    /// The IPv6 address, or the IPv4 one mapped (`::ffff:a.b.c.d`), as network-order words.
    pub words: [u32; 4],
}

impl Destination {
    #[inline(always)]
    fn addr(&self) -> [u8; 16] {
        // SAFETY: `[u32; 4]` and `[u8; 16]` have the same size; the words hold network-order
        // bytes.
        unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(self.words) }
    }
}

/// Reads the destination of a `sock_addr` hook (`connect6`/`sendmsg6` when `v6`).
#[inline(always)]
pub fn destination(ctx: &SockAddrContext, v6: bool) -> Destination {
    let sa = ctx.sock_addr;
    // SAFETY: context fields the verifier lets sock_addr programs read, one 4-byte load each.
    unsafe {
        let port = u16::from_be(core::ptr::read_volatile(&(*sa).user_port) as u16);
        // Four 4-byte words, no loops or slice copies: those become `memset`/`memcpy` calls,
        // which BPF programs do not have.
        let words: [u32; 4] = if v6 {
            [
                core::ptr::read_volatile(&(*sa).user_ip6[0]),
                core::ptr::read_volatile(&(*sa).user_ip6[1]),
                core::ptr::read_volatile(&(*sa).user_ip6[2]),
                core::ptr::read_volatile(&(*sa).user_ip6[3]),
            ]
        } else {
            [
                0,
                0,
                0xffffu32.to_be(),
                core::ptr::read_volatile(&(*sa).user_ip4),
            ]
        };
        Destination { port, words }
    }
}

/// The verdict of a connect or send hook: 1 lets it through, 0 fails it with `EPERM`.
#[inline(always)]
pub fn connect(ctx: &SockAddrContext, dest: &Destination) -> i32 {
    // SAFETY: helper without preconditions.
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(slot) = slot_of((id >> 32) as u32) else {
        return 1;
    };
    let port = dest.port;
    // SAFETY: as in `destination`.
    let dgram = unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).type_) } == SOCK_DGRAM;
    // A UDP connect to port 0 sends nothing and can send nothing (resolvers use it to learn a
    // source address); a send to port 0 fails anyway.
    if (dgram && port == 0) || net_allowed(slot, port, dest.addr()) {
        return 1;
    }
    deny(id)
}

/// The verdict of a bind hook.
#[inline(always)]
fn bind(ctx: &SockAddrContext, v6: bool) -> i32 {
    // SAFETY: helper without preconditions.
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(slot) = slot_of((id >> 32) as u32) else {
        return 1;
    };
    let port = destination(ctx, v6).port;
    // SAFETY: a map value read while this program runs (RCU).
    if port == 0 || unsafe { LISTEN_ALLOW.get(listen_key(slot, port)) }.is_some() {
        return 1;
    }
    deny(id)
}

/// Counts a refusal of thread `id`'s current syscall and remembers it for its `sys_exit`
/// record; returns the verdict of the cgroup hooks that refuses.
#[inline(always)]
pub fn deny(id: u64) -> i32 {
    count(counter::ENFORCE_BLOCKED);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = NET_DENIED.insert(id, now, 0);
    0
}

/// Whether a hook refused the current thread's syscall (and forgets it).
#[inline(always)]
pub fn take_denied() -> bool {
    // SAFETY: helper without preconditions.
    let id = unsafe { bpf_get_current_pid_tgid() };
    // SAFETY: as in `slot_of`.
    let Some(at) = (unsafe { NET_DENIED.get(id) }).copied() else {
        return false;
    };
    let _ = NET_DENIED.remove(id);
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }.wrapping_sub(at) < DENIED_FRESH_NS
}

/// `bind(2)` on an IPv4 socket.
#[cgroup_sock_addr(bind4)]
pub fn enforce_bind4(ctx: SockAddrContext) -> i32 {
    bind(&ctx, false)
}

/// `bind(2)` on an IPv6 socket.
#[cgroup_sock_addr(bind6)]
pub fn enforce_bind6(ctx: SockAddrContext) -> i32 {
    bind(&ctx, true)
}

/// State of a path judgement, shared with the `bpf_loop` callback through the stack.
#[repr(C)]
struct Judge {
    /// The record's data area and the path's place in it (the walk's encoding: components
    /// leaf first, each followed by `/`, then `/` for the root).
    base: *const u8,
    end: u64,
    slot: u64,
    /// Hash of what was read so far (backwards from the end: root first).
    hash: u64,
    /// Hash of the component being read (the leaf, at the end).
    name: u64,
    seed: u64,
    /// Access bits of every directory on the way.
    trees: u64,
}

/// The access an open asks for, from the file's `f_mode`: read, and write (an open that
/// created the file writes it, whatever its mode).
#[inline(always)]
pub fn need_of(fmode: u32) -> u32 {
    let mut need = 0;
    if fmode & FMODE_READ != 0 {
        need |= ACCESS_READ;
    }
    if fmode & (FMODE_WRITE | FMODE_CREATED) != 0 {
        need |= ACCESS_WRITE;
    }
    need
}

#[inline(always)]
fn rule(slot: u64, kind: u32, hash: u64) -> u32 {
    let key = PathKey {
        slot: slot as u32,
        kind,
        hash,
    };
    // SAFETY: a map value read while this program runs (RCU).
    unsafe { PATH_RULES.get(key) }.copied().unwrap_or(0)
}

/// One byte of the path, read backwards: a `/` after the first byte ends a directory, whose
/// rules are looked up before the `/` goes into the hash.
extern "C" fn judge_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Judge` passed by `judge`.
    let j = unsafe { &mut *(ctx as *mut Judge) };
    let at = (j.end.wrapping_sub(1).wrapping_sub(index) as usize) & DATA_MASK;
    // SAFETY: within the masked data area of the scratch record.
    let b = unsafe { *j.base.add(at) };
    if b == b'/' && index >= 1 {
        j.trees |= u64::from(rule(j.slot, KIND_PATH, j.hash));
        j.name = j.seed;
    } else if b != b'/' {
        j.name = hash_byte(j.name, b);
    }
    j.hash = hash_byte(j.hash, b);
    0
}

/// Whether the process under `slot` may use path `s` of the data area at `base` (the walk's
/// encoding, complete) for every access in `need`.
#[inline(always)]
fn allowed(base: *const u8, s: StrRef, slot: u32, need: u32) -> bool {
    // SAFETY: as in `crate::maps::offset`.
    let seed = unsafe { core::ptr::read_volatile(&HASH_SEED) };
    let mut j = Judge {
        base,
        end: u64::from(s.off) + u64::from(s.len),
        slot: u64::from(slot),
        hash: seed,
        name: seed,
        seed,
        trees: 0,
    };
    // SAFETY: `judge_step` has the callback signature bpf_loop expects; `j` outlives the call.
    // (The `bounded-loops` build keeps no reference to it: `verdict` returns before calling
    // `allowed` there, a constant condition LLVM removes the call by.)
    unsafe {
        bpf_loop(
            u32::from(s.len),
            judge_step as *mut c_void,
            &mut j as *mut Judge as *mut c_void,
            0,
        );
    }
    let exact = rule(j.slot, KIND_PATH, j.hash);
    let name = rule(j.slot, KIND_NAME, j.name);
    let trees = j.trees as u32;
    let granted = (exact >> EXACT_SHIFT)
        | (((trees >> TREE_SHIFT) | (trees >> OPEN_SHIFT)) & !(name >> EXCLUDED_SHIFT));
    // A detection's `action: kill` denies whatever the allowlists grant.
    let denied = (exact >> DENY_SHIFT)
        | (((trees >> DENY_TREE_SHIFT) | (name >> DENY_SHIFT)) & !(name >> DENY_TREE_SHIFT));
    need & (!granted | denied) & 7 == 0
}

/// Whether the process under `slot` may use path `s` of the data area at `base` for `need`
/// (`None`: not judged, and counted). `complete`: the path walk reached the root.
#[inline(always)]
pub fn verdict(base: *const u8, s: StrRef, complete: bool, slot: u32, need: u32) -> Option<bool> {
    if need == 0 {
        return Some(true);
    }
    // Without bpf_loop (kernels before 5.17) paths are not judged in the kernel: a bounded
    // per-byte loop is more than those verifiers accept in time (even at 256 bytes, loading
    // took over a minute on 5.10 under QEMU). Counted as undecided; user space alerts.
    if !complete || s.len == 0 || cfg!(feature = "bounded-loops") {
        count(counter::ENFORCE_UNDECIDED);
        return None;
    }
    Some(allowed(base, s, slot, need))
}

/// Kills the current process when it is under enforcement and path `s` of `rec` is outside
/// its slot for `need`. `complete`: the path walk reached the root (else the path is not
/// judged, and counted). Where the BPF LSM hooks judge (see [`crate::lsm`]), they refused the
/// step before it happened and this judges nothing.
#[inline(always)]
pub fn judge_path(rec: &Record, s: StrRef, complete: bool, need: u32) {
    if crate::maps::lsm_enforces() {
        return;
    }
    // SAFETY: helper without preconditions.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let Some(slot) = slot_of(tgid) else {
        return;
    };
    if verdict(rec.data.base, s, complete, slot, need) != Some(false) {
        return;
    }
    // SAFETY: helper on the current task; SIGKILL is delivered before it returns to user
    // space.
    unsafe { bpf_send_signal(SIGKILL) };
    count(counter::ENFORCE_KILLED);
    rec.set_flag(FLAG_KILLED);
}

const SIGKILL: u32 = 9;
