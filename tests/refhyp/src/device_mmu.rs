// SPDX-License-Identifier: GPL-2.0-only
//! The devices' view of guest RAM, made exact by the MMU.
//!
//! Device backends reach guest RAM through the mappings the vhost-user
//! framework makes of QEMU's memory table. `CheckedMemory` checks every
//! access the device code makes, but the framework also reaches guest RAM
//! on its own (it reads the used ring's index when the frontend sets the
//! ring's addresses), and a check is only as good as the code that
//! remembers to make it. So the mappings themselves follow the host view:
//! every page is `PROT_NONE` except those the host may access, `PROT_READ`
//! for `Read` and `PROT_READ | PROT_WRITE` for `ReadWrite`, and every
//! change of the view (`Hypervisor::take_changes`) is `mprotect`ed before
//! the exit that made it answers. An access to any other page faults: the
//! `SIGSEGV` handler below counts it and maps a scratch page over the
//! faulting one (anonymous, or a private copy of a page the host may read
//! that was written), so the access completes without touching guest
//! memory, and the next exit (or the end of the device request) maps the
//! guest's page back with the protection the view gives it.
//!
//! Reductions reach the mappings only where nothing can be in flight:
//! at an exit that holds the host's gate for writing (`Host::gate`), so a
//! revocation waits for the device requests that checked the page before.
//! A drain on a host fault, inside a device request, grants at once and
//! leaves its reductions for the next exit. With `stale_tlb`, reductions
//! wait for the hypervisor's next invalidation instead, as a host's cached
//! translations would: the model in which a guest that skips `SYNC` leaves
//! pages reachable.

use std::cell::Cell;
use std::ffi::c_void;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, Once, OnceLock};

use pviommu_reference_hyp::abi::layout::PAGE_SHIFT;
use pviommu_reference_hyp::Hypervisor;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion};

const PAGE: usize = 1 << PAGE_SHIFT;
/// Device mappings of guest RAM the fault handler knows at once: each
/// region of each memory table a backend was given.
const MAX_SLOTS: usize = 64;

/// Protection bits of the host view's permission values: 1 read, 2 write
/// (`Perm::Write`, ABI 2.2), 3 both.
///
/// x86 page tables cannot express write-only: `PROT_WRITE` maps the page
/// readable too. So the mappings enforce write-only pages only against
/// writes they do not allow; reads of a write-only page are refused by the
/// host view's check (`CheckedMemory`), not by the mappings.
fn prot_of(perm: u8) -> i32 {
    match perm & 3 {
        1 => libc::PROT_READ,
        2 => libc::PROT_WRITE,
        3 => libc::PROT_READ | libc::PROT_WRITE,
        _ => libc::PROT_NONE,
    }
}

/// The permission bits an access needs: bit 0 to read, bit 1 to write.
fn need_of(write: bool) -> u8 {
    if write {
        2
    } else {
        1
    }
}

/// What the fault handler shares with one `DeviceMmu`.
struct Shared {
    /// Effective protection per frame (0, 1 or 3): what the mappings give.
    shadow: Box<[AtomicU8]>,
    /// Faults of device code (not of the adversary's probes).
    faults: AtomicU64,
    /// Faults of the adversary's probes.
    probe_faults: AtomicU64,
    /// The last device fault: `gfn << 1 | write`.
    last_fault: AtomicU64,
    /// A scratch page was mapped since the last restore.
    scratch: AtomicBool,
    /// The fault service: a thread that drains the ring and applies the
    /// faulting frame's entry, as the hypervisor does on a host fault,
    /// before the handler refuses an access (`FaultService`).
    service: AtomicBool,
    /// The handshake with the service: `IDLE`, `POSTED`, `ALLOWED` or
    /// `DENIED`; one fault at a time (`asking`).
    state: AtomicU32,
    asking: AtomicBool,
    /// The posted fault: `gfn << 1 | write`.
    posted: AtomicU64,
}

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const ALLOWED: u32 = 2;
const DENIED: u32 = 3;

/// futex(2) on `word`: waits while it holds `val`, or wakes its waiters.
fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the call's duration; a
    // futex call is async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

impl Shared {
    /// From the fault handler: asks the service whether the access may
    /// proceed after a drain; waits for the answer.
    fn ask(&self, gfn: u64, write: bool) -> bool {
        while self
            .asking
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        self.posted
            .store(gfn << 1 | u64::from(write), Ordering::Relaxed);
        self.state.store(POSTED, Ordering::Release);
        futex(&self.state, libc::FUTEX_WAKE, u32::MAX);
        let answer = loop {
            match self.state.load(Ordering::Acquire) {
                POSTED => futex(&self.state, libc::FUTEX_WAIT, POSTED),
                a => break a,
            }
        };
        self.state.store(IDLE, Ordering::Relaxed);
        self.asking.store(false, Ordering::Release);
        answer == ALLOWED
    }
}

impl Shared {
    fn shadow(&self, gfn: u64) -> u8 {
        usize::try_from(gfn)
            .ok()
            .and_then(|i| self.shadow.get(i))
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

/// One registered mapping, as the fault handler sees it. A slot is free
/// when `start` is 0; every field is written under `LOCK`.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    /// Frame of the first page.
    gfn: AtomicU64,
    /// File and offset behind the first page; -1 for an anonymous mapping.
    fd: AtomicUsize,
    file_off: AtomicU64,
    /// One bit per page: a scratch page is mapped there.
    scratch: AtomicPtr<AtomicU64>,
    owner: AtomicPtr<Shared>,
}

impl Slot {
    fn free() -> Slot {
        Slot {
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            gfn: AtomicU64::new(0),
            fd: AtomicUsize::new(usize::MAX),
            file_off: AtomicU64::new(0),
            scratch: AtomicPtr::new(std::ptr::null_mut()),
            owner: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// The registered mappings; set before the handler is installed, so the
/// handler only ever reads an initialised value.
static SLOTS: OnceLock<Box<[Slot]>> = OnceLock::new();

fn slots() -> &'static [Slot] {
    SLOTS.get_or_init(|| (0..MAX_SLOTS).map(|_| Slot::free()).collect())
}
/// Held while a mapping or a slot changes, and by the fault handler while
/// it decides and redirects: the handler never races a protection change.
/// Nothing that holds it touches a device mapping, so it cannot fault.
static LOCK: AtomicBool = AtomicBool::new(false);
/// The `SIGSEGV` action in force before ours, for faults that are not ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

thread_local! {
    /// Faults this thread took in a device mapping (device code or probe).
    static THREAD_FAULTS: Cell<u64> = const { Cell::new(0) };
    /// This thread is the adversary probing a page on purpose.
    static PROBING: Cell<bool> = const { Cell::new(false) };
    /// x86: the address the probe instruction accesses and that
    /// instruction's length: a fault there skips the instruction instead of
    /// mapping a scratch page (0: not such a probe).
    static PROBE_AT: Cell<usize> = const { Cell::new(0) };
    static PROBE_LEN: Cell<usize> = const { Cell::new(0) };
}

/// Returns how many faults this thread took in device mappings so far.
pub fn thread_faults() -> u64 {
    // The handler updates the count on this thread, in between any two
    // instructions that touch guest memory: read it afresh.
    compiler_fence(Ordering::SeqCst);
    THREAD_FAULTS.with(Cell::get)
}

struct LockGuard;

fn lock() -> LockGuard {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    LockGuard
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

/// Whether the fault in `ctx` was a write (x86: bit 1 of the error code).
/// Elsewhere every fault is taken as a write, which only picks a private
/// copy over an anonymous page for a readable one.
fn fault_is_write(ctx: *mut c_void) -> bool {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        // SAFETY: the kernel passes a valid `ucontext_t` to an
        // `SA_SIGINFO` handler.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        uc.uc_mcontext.gregs[libc::REG_ERR as usize] & 2 != 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    {
        let _ = ctx;
        true
    }
}

/// Writes `msg` to stderr and aborts: what the handler does when it cannot
/// keep an access away from guest memory.
fn die(msg: &str) -> ! {
    // SAFETY: write(2) and abort(3) are async-signal-safe; `msg` is valid.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// Maps the file page behind `page` (or a fresh anonymous page) there with
/// `prot`, shared (or private, for a scratch copy); returns success.
///
/// # Safety
///
/// `page` is a page of a registered device mapping, which no Rust
/// reference covers, and `LOCK` is held.
unsafe fn map_page(page: usize, prot: i32, fd: usize, off: u64, private: bool) -> bool {
    let flags = libc::MAP_FIXED | libc::MAP_NORESERVE;
    let r = if fd == usize::MAX {
        // SAFETY: the caller owns the page's address range (a registered
        // device mapping); MAP_FIXED only replaces that page.
        unsafe {
            libc::mmap(
                page as *mut c_void,
                PAGE,
                prot,
                flags | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        }
    } else {
        let share = if private {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
        // SAFETY: as above; `fd` stays open while its slot is registered.
        unsafe {
            libc::mmap(
                page as *mut c_void,
                PAGE,
                prot,
                flags | share,
                fd as i32,
                off as libc::off_t,
            )
        }
    };
    r == page as *mut c_void
}

/// Redirects a fault at `addr` if it lies in a registered device mapping;
/// returns false for a fault that is not ours.
fn redirect(addr: usize, write: bool) -> bool {
    let Some(slots) = SLOTS.get() else {
        return false;
    };
    let mut asked = false;
    loop {
        match redirect_once(slots, addr, write, asked) {
            Redirect::NotOurs => return false,
            Redirect::Done => return true,
            Redirect::Ask(owner, gfn) => {
                // SAFETY: `redirect_once` took a reference on `owner` for
                // us; it is dropped below.
                let owner = unsafe { Arc::from_raw(owner) };
                if owner.ask(gfn, write) {
                    return true;
                }
                asked = true;
            }
        }
    }
}

enum Redirect {
    NotOurs,
    Done,
    /// Ask the fault service of this owner about this frame (without
    /// `LOCK`: the service changes mappings), then decide again.
    Ask(*const Shared, u64),
}

fn redirect_once(slots: &[Slot], addr: usize, write: bool, asked: bool) -> Redirect {
    let _l = lock();
    for slot in slots.iter() {
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        // SAFETY: a registered slot's owner and bitmap live until the slot
        // is freed, which takes `LOCK`.
        let owner = unsafe { &*slot.owner.load(Ordering::Relaxed) };
        let page = addr & !(PAGE - 1);
        let idx = (page - start) / PAGE;
        // SAFETY: as above; the bitmap has a bit for every page.
        let bits = unsafe { &*slot.scratch.load(Ordering::Relaxed).add(idx / 64) };
        if bits.load(Ordering::Relaxed) & (1 << (idx % 64)) != 0 {
            // Already a scratch page: the access can proceed.
            return Redirect::Done;
        }
        let gfn = slot.gfn.load(Ordering::Relaxed) + idx as u64;
        let have = owner.shadow(gfn);
        let need = need_of(write);
        if have & need == need {
            // Granted since the fault: retry the access.
            return Redirect::Done;
        }
        if !asked && !PROBING.with(Cell::get) && owner.service.load(Ordering::Acquire) {
            // A host fault: the hypervisor drains before it refuses. The
            // adversary's probes are not faults it serves (and it holds
            // the host lock the service needs).
            let ptr = slot.owner.load(Ordering::Relaxed) as *const Shared;
            // SAFETY: the owner is an `Arc<Shared>` kept alive by its
            // `DeviceMmu` while registered (we hold `LOCK`); taking a
            // count is one atomic increment.
            unsafe { Arc::increment_strong_count(ptr) };
            return Redirect::Ask(ptr, gfn);
        }
        let fd = slot.fd.load(Ordering::Relaxed);
        let off = slot.file_off.load(Ordering::Relaxed) + (idx * PAGE) as u64;
        // A page the host may read stays readable (a private copy takes
        // the write); any other page reads as zeros.
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let readable = have & 1 != 0;
        // SAFETY: `page` is in a registered mapping and `LOCK` is held.
        let ok = unsafe {
            if readable {
                map_page(page, rw, fd, off, true)
            } else {
                map_page(page, rw, usize::MAX, 0, true)
            }
        };
        if !ok {
            die("pviommu-refhyp: cannot redirect a device access to an unshared page\n");
        }
        bits.fetch_or(1 << (idx % 64), Ordering::Relaxed);
        owner.scratch.store(true, Ordering::Relaxed);
        THREAD_FAULTS.with(|c| c.set(c.get() + 1));
        if !PROBING.with(Cell::get) {
            owner.faults.fetch_add(1, Ordering::Relaxed);
            owner
                .last_fault
                .store(gfn << 1 | u64::from(write), Ordering::Relaxed);
        }
        return Redirect::Done;
    }
    Redirect::NotOurs
}

/// The other end of the fault handler's handshake: the thread that serves
/// host faults on the mappings (`Host::serve_faults`).
pub struct FaultService(Arc<Shared>);

impl FaultService {
    /// Waits for the next fault; returns its frame and direction.
    pub fn next(&self) -> (u64, bool) {
        loop {
            match self.0.state.load(Ordering::Acquire) {
                POSTED => break,
                s => futex(&self.0.state, libc::FUTEX_WAIT, s),
            }
        }
        let posted = self.0.posted.load(Ordering::Relaxed);
        (posted >> 1, posted & 1 != 0)
    }

    /// Answers the fault `next` returned: whether the access may proceed
    /// (the mappings grant it now).
    pub fn answer(&self, allowed: bool) {
        let a = if allowed { ALLOWED } else { DENIED };
        self.0.state.store(a, Ordering::Release);
        futex(&self.0.state, libc::FUTEX_WAKE, u32::MAX);
    }
}

/// A fault of the adversary's probe instruction: skip it (x86).
fn skip_probe(addr: usize, ctx: *mut c_void) -> bool {
    let (at, len) = (PROBE_AT.with(Cell::get), PROBE_LEN.with(Cell::get));
    if len == 0 || addr < at || addr - at >= 8 {
        return false;
    }
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        // SAFETY: the kernel passes a valid, writable `ucontext_t` to an
        // `SA_SIGINFO` handler; resuming after our own instruction of
        // `len` bytes is what the probe expects.
        let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] += len as i64;
        THREAD_FAULTS.with(|c| c.set(c.get() + 1));
        true
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    {
        let _ = ctx;
        false
    }
}

extern "C" fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    if skip_probe(addr, ctx) || redirect(addr, fault_is_write(ctx)) {
        return;
    }
    // Not a device mapping: whatever handled SIGSEGV before us does.
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `prev` was leaked before our handler was installed and is
    // never freed; the handler it names expects exactly these arguments.
    unsafe {
        let handler = if prev.is_null() {
            libc::SIG_DFL
        } else {
            (*prev).sa_sigaction
        };
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // Returning re-runs the access, which now kills the process
            // the default way.
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
        } else if (*prev).sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                std::mem::transmute(handler);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

fn install_handler() {
    slots();
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid value to fill; the handler
        // is async-signal-safe (atomics, mmap, write, abort).
        unsafe {
            let prev: *mut libc::sigaction = Box::into_raw(Box::new(std::mem::zeroed()));
            let mut sa: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) = on_segv;
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGSEGV, &sa, prev) == 0 {
                PREVIOUS.store(prev, Ordering::Release);
            }
        }
    });
}

/// One region of a memory table a backend was given.
struct Region {
    /// Keeps the mapping alive while it is registered.
    _map: Arc<MmapRegion<()>>,
    start: usize,
    pages: usize,
    gfn: u64,
    /// The region is guest RAM: page aligned in guest-physical space and
    /// backed by a file we can map back.
    fd: usize,
    file_off: u64,
    scratch: Box<[AtomicU64]>,
    slot: Option<usize>,
}

impl Region {
    fn frames(&self) -> Range<u64> {
        self.gfn..self.gfn + self.pages as u64
    }

    /// `mprotect`s frames `run` (inside this region) to `prot`.
    fn protect(&self, run: &Range<u64>, prot: i32) -> bool {
        let first = (run.start - self.gfn) as usize;
        let n = (run.end - run.start) as usize;
        // SAFETY: the range lies in our own registered mapping, which
        // stays mapped while `self.map` lives; no Rust reference covers it.
        unsafe { libc::mprotect((self.start + first * PAGE) as *mut c_void, n * PAGE, prot) == 0 }
    }
}

/// Gives a whole region the protections of the shadow; returns how many
/// protection changes failed.
fn protect_all(shared: &Shared, region: &Region) -> u64 {
    let mut errors = 0;
    let all = region.frames();
    if !region.protect(&all, libc::PROT_NONE) {
        errors += 1;
        log::error!("device MMU: cannot protect a mapping of guest RAM");
    }
    let mut g = all.start;
    while g < all.end {
        let perm = shared.shadow(g);
        let mut end = g + 1;
        while end < all.end && shared.shadow(end) == perm {
            end += 1;
        }
        if perm != 0 && !region.protect(&(g..end), prot_of(perm)) {
            errors += 1;
        }
        g = end;
    }
    errors
}

/// What the MMU did, for the counters document.
#[derive(Default, Debug, Clone)]
pub struct MmuCounters {
    /// Memory tables (sets of mappings) registered.
    pub mappings: u64,
    /// `mprotect` calls that changed a protection.
    pub protects: u64,
    /// Pages given back their file mapping after a scratch redirect.
    pub restores: u64,
    /// Reductions held back (until an exit, or an invalidation).
    pub deferred: u64,
    /// Protection changes that failed (then the region is made
    /// `PROT_NONE` and granted again).
    pub errors: u64,
}

/// The devices' mappings of guest RAM, kept equal to the host view.
pub struct DeviceMmu {
    shared: Arc<Shared>,
    regions: Vec<Region>,
    /// Each registered memory table, as its regions' start addresses.
    tables: Vec<Vec<usize>>,
    enforce: bool,
    stale_tlb: bool,
    /// Frames whose reduction is held back, and a flag per frame.
    pending: Vec<u64>,
    is_pending: Vec<bool>,
    /// The hypervisor's invalidation count when reductions were last
    /// allowed to complete.
    invalidations: u64,
    faults_seen: u64,
    pub counters: MmuCounters,
}

impl DeviceMmu {
    /// An MMU for a guest of `frames` frames. With `enforce` false the
    /// mappings are left as the framework made them (`--no-enforce`).
    pub fn new(frames: u64, enforce: bool, stale_tlb: bool) -> DeviceMmu {
        if enforce {
            install_handler();
        }
        let n = usize::try_from(frames).unwrap_or(0);
        DeviceMmu {
            shared: Arc::new(Shared {
                shadow: (0..n).map(|_| AtomicU8::new(0)).collect(),
                faults: AtomicU64::new(0),
                probe_faults: AtomicU64::new(0),
                last_fault: AtomicU64::new(0),
                scratch: AtomicBool::new(false),
                service: AtomicBool::new(false),
                state: AtomicU32::new(IDLE),
                asking: AtomicBool::new(false),
                posted: AtomicU64::new(0),
            }),
            regions: Vec::new(),
            tables: Vec::new(),
            enforce,
            stale_tlb,
            pending: Vec::new(),
            is_pending: vec![false; n],
            invalidations: 0,
            faults_seen: 0,
            counters: MmuCounters::default(),
        }
    }

    /// Hands out the fault service's end of the handshake: from now on the
    /// handler asks it (drain and apply the faulting frame) before it
    /// refuses a device access. Without a service every fault is refused.
    pub fn fault_service(&self) -> FaultService {
        self.shared.service.store(true, Ordering::Release);
        FaultService(self.shared.clone())
    }

    /// Device code's faults so far.
    pub fn faults(&self) -> u64 {
        self.shared.faults.load(Ordering::Relaxed)
    }

    /// The adversary's probe faults so far.
    #[cfg(test)]
    pub fn probe_faults(&self) -> u64 {
        self.shared.probe_faults.load(Ordering::Relaxed)
    }

    /// The protection the mappings give frame `gfn` now (0, 1 or 3).
    pub fn effective(&self, gfn: u64) -> u8 {
        self.shared.shadow(gfn)
    }

    /// Frames whose reduction is not in the mappings yet.
    #[cfg(test)]
    pub fn held_back(&self) -> &[u64] {
        &self.pending
    }

    /// Registers the mappings of a memory table (what a backend's
    /// `update_memory` is given, or what a `CheckedMemory` wraps) and
    /// protects them as the view says. A table already registered is
    /// left alone. Mappings are never forgotten: a backend may still use
    /// an older table, and it stays exact too.
    pub fn adopt(&mut self, mem: &GuestMemoryMmap<()>) {
        let starts: Vec<usize> = mem.iter().map(|r| r.as_ptr() as usize).collect();
        if starts.is_empty() || self.tables.contains(&starts) {
            return;
        }
        self.tables.push(starts);
        self.counters.mappings += 1;
        for r in mem.iter() {
            let gpa = r.start_addr().0;
            let len = r.len() as usize;
            let (fd, file_off) = match r.file_offset() {
                Some(f) if gpa % PAGE as u64 == 0 => (f.file().as_raw_fd() as usize, f.start()),
                // Not file-backed guest RAM: never reachable.
                _ => (usize::MAX, 0),
            };
            let pages = len / PAGE;
            let mut region = Region {
                _map: r.get_mmap(),
                start: r.as_ptr() as usize,
                pages,
                gfn: if fd == usize::MAX {
                    u64::MAX / 2
                } else {
                    gpa >> PAGE_SHIFT
                },
                fd,
                file_off,
                scratch: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
                slot: None,
            };
            if self.enforce {
                let _l = lock();
                region.slot = slots().iter().position(|s| {
                    s.start
                        .compare_exchange(0, region.start, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                });
                if let Some(i) = region.slot {
                    let s = &slots()[i];
                    s.len.store(pages * PAGE, Ordering::Relaxed);
                    s.gfn.store(region.gfn, Ordering::Relaxed);
                    s.fd.store(region.fd, Ordering::Relaxed);
                    s.file_off.store(file_off, Ordering::Relaxed);
                    s.scratch
                        .store(region.scratch.as_ptr() as *mut _, Ordering::Relaxed);
                    s.owner
                        .store(Arc::as_ptr(&self.shared) as *mut _, Ordering::Relaxed);
                } else {
                    log::error!("device MMU: no slot left for a mapping of guest RAM");
                    self.counters.errors += 1;
                }
                self.counters.errors += protect_all(&self.shared, &region);
            }
            self.regions.push(region);
        }
    }

    /// Makes the mappings of frames `run` give `perm`.
    fn set(&mut self, run: Range<u64>, perm: u8) {
        for gfn in run.clone() {
            if let Some(s) = usize::try_from(gfn)
                .ok()
                .and_then(|i| self.shared.shadow.get(i))
            {
                s.store(perm, Ordering::Relaxed);
            }
        }
        let mut failed = Vec::new();
        for (i, region) in self.regions.iter().enumerate() {
            let f = region.frames();
            let part = run.start.max(f.start)..run.end.min(f.end);
            if part.start >= part.end {
                continue;
            }
            self.counters.protects += 1;
            if !region.protect(&part, prot_of(perm)) {
                failed.push(i);
            }
        }
        for i in failed {
            // Too many distinct protections (the kernel's map count): one
            // protection for the whole region always works, then grant
            // again what can be.
            self.counters.errors += 1;
            log::error!("device MMU: mprotect failed; protecting the whole region again");
            self.counters.errors += protect_all(&self.shared, &self.regions[i]);
        }
    }

    /// Maps the guest's pages back where scratch pages were put.
    fn restore(&mut self) {
        if !self.shared.scratch.swap(false, Ordering::Relaxed) {
            return;
        }
        for region in &self.regions {
            for (w, word) in region.scratch.iter().enumerate() {
                let mut bits = word.swap(0, Ordering::Relaxed);
                while bits != 0 {
                    let idx = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let gfn = region.gfn + idx as u64;
                    let prot = prot_of(self.shared.shadow(gfn));
                    let page = region.start + idx * PAGE;
                    let off = region.file_off + (idx * PAGE) as u64;
                    // SAFETY: `page` lies in our registered mapping and
                    // `LOCK` is held by the caller.
                    if !unsafe { map_page(page, prot, region.fd, off, false) } {
                        die("pviommu-refhyp: cannot map a guest page back\n");
                    }
                    self.counters.restores += 1;
                }
            }
        }
    }

    /// Brings the mappings up to date with the host view after the state
    /// machine ran. Grants are mapped at once; reductions only when
    /// `may_revoke` (the caller holds the gate for writing, so no device
    /// access is in flight), and with `stale_tlb` only once the
    /// hypervisor has invalidated since they were drained.
    pub fn sync(&mut self, hyp: &mut Hypervisor, may_revoke: bool) {
        let mut changes = Vec::new();
        hyp.take_changes(|r| changes.push(r));
        if !self.enforce {
            return;
        }
        let invalidations = hyp.counters().invalidations;
        let _l = lock();
        self.restore();
        let mut run: Option<(Range<u64>, u8)> = None;
        for r in changes {
            for gfn in r {
                let want = hyp.host_perm(gfn).bits();
                let have = self.shared.shadow(gfn);
                if want == have {
                    continue;
                }
                // Since ABI 2.2 a change can grant and reduce at once (read
                // to write-only): the grant is mapped now, whatever happens
                // to the reduction.
                let mut target = want;
                if have & !want != 0 && (!may_revoke || self.stale_tlb) {
                    self.hold_back(gfn);
                    if want & !have == 0 {
                        continue;
                    }
                    target = have | want;
                }
                run = match run {
                    Some((r, p)) if p == target && r.end == gfn => Some((r.start..gfn + 1, p)),
                    other => {
                        if let Some((r, p)) = other {
                            self.set(r, p);
                        }
                        Some((gfn..gfn + 1, target))
                    }
                };
            }
        }
        if let Some((r, p)) = run {
            self.set(r, p);
        }
        let invalidated = invalidations != self.invalidations;
        if may_revoke && (!self.stale_tlb || invalidated) {
            self.invalidations = invalidations;
            for gfn in std::mem::take(&mut self.pending) {
                if let Some(p) = self.is_pending.get_mut(gfn as usize) {
                    *p = false;
                }
                let want = hyp.host_perm(gfn).bits();
                if want != self.shared.shadow(gfn) {
                    self.set(gfn..gfn + 1, want);
                }
            }
        }
    }

    fn hold_back(&mut self, gfn: u64) {
        if let Some(p) = self.is_pending.get_mut(gfn as usize) {
            if !*p {
                *p = true;
                self.pending.push(gfn);
                self.counters.deferred += 1;
            }
        }
    }

    /// Maps back any scratch page device code left (at the end of a
    /// device request that faulted).
    pub fn restore_now(&mut self) {
        let _l = lock();
        self.restore();
    }

    /// Returns the device faults since the last call and the last one's
    /// frame and direction, for the log.
    pub fn new_faults(&mut self) -> Option<(u64, u64, bool)> {
        let n = self.faults();
        if n == self.faults_seen {
            return None;
        }
        let new = n - self.faults_seen;
        self.faults_seen = n;
        let last = self.shared.last_fault.load(Ordering::Relaxed);
        Some((new, last >> 1, last & 1 != 0))
    }

    /// The adversary: tries to read (or write) frame `gfn` through the
    /// newest device mapping that covers it, as a device would. Returns
    /// `None` if no mapping covers it, else whether the access went
    /// through. A write is a locked read-modify-write that leaves the
    /// bytes as they were, so a successful attack proves reach without
    /// corrupting the guest.
    pub fn probe(&mut self, gfn: u64, write: bool) -> Option<bool> {
        if !self.enforce {
            return None;
        }
        let region = self
            .regions
            .iter()
            .rev()
            .find(|r| r.fd != usize::MAX && r.frames().contains(&gfn))?;
        let addr = region.start + ((gfn - region.gfn) as usize) * PAGE;
        // A scratch page a device fault left would take the access (and
        // count it as reaching the guest): the guest's page goes back first.
        self.restore_now();
        let before = thread_faults();
        PROBING.with(|p| p.set(true));
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `addr` is 8-aligned inside a mapping we keep alive; an
        // access the protection refuses faults into our handler, which
        // skips the instruction (or redirects it to a scratch page).
        unsafe { access(addr, write) };
        // The handler ran on this thread, between these two points.
        compiler_fence(Ordering::SeqCst);
        PROBING.with(|p| p.set(false));
        let faulted = thread_faults() != before;
        if faulted {
            self.shared.probe_faults.fetch_add(1, Ordering::Relaxed);
            self.restore_now();
        }
        Some(!faulted)
    }
}

/// One read of 8 bytes at `p`, or one write that changes nothing there (a
/// locked `or` of 0, which the compiler cannot turn into a load), as an
/// instruction the fault handler can skip.
///
/// # Safety
///
/// `p` is 8-aligned and mapped (or faults into our handler).
unsafe fn access(p: usize, write: bool) {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        // The encodings are spelled out so that their lengths are known:
        // `mov rax, [rdi]` is 3 bytes, `lock or qword [rdi], 0` is 5.
        PROBE_AT.with(|c| c.set(p));
        PROBE_LEN.with(|c| c.set(if write { 5 } else { 3 }));
        // SAFETY: the caller's guarantee; a faulting instruction is
        // skipped by the handler, which leaves `rax` undefined.
        unsafe {
            if write {
                std::arch::asm!(
                    ".byte 0xf0, 0x48, 0x83, 0x0f, 0x00",
                    in("rdi") p,
                    options(nostack)
                );
            } else {
                // Not `readonly`: the handler may write this thread's fault
                // count meanwhile, which the caller reads next.
                std::arch::asm!(
                    ".byte 0x48, 0x8b, 0x07",
                    in("rdi") p,
                    out("rax") _,
                    options(nostack)
                );
            }
        }
        PROBE_LEN.with(|c| c.set(0));
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    // SAFETY: the caller's guarantee; a compare-exchange of the value read
    // is a write access that leaves the value as it is.
    unsafe {
        let a = &*(p as *const AtomicU64);
        let v = a.load(Ordering::Relaxed);
        if write {
            let _ = a.compare_exchange(v, v, Ordering::SeqCst, Ordering::Relaxed);
        }
    }
}

impl Drop for DeviceMmu {
    fn drop(&mut self) {
        let _l = lock();
        for region in &self.regions {
            if let Some(i) = region.slot {
                slots()[i].start.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pviommu_reference_hyp::{Config, GuestRam, VecRam};
    use vm_memory::{Bytes, FileOffset, GuestAddress};

    const FRAMES: u64 = 64;

    /// A guest of 64 frames whose RAM the test maps twice: once as the
    /// hypervisor (through a file), once as a device backend would.
    fn setup(stale_tlb: bool) -> (std::fs::File, GuestMemoryMmap<()>, DeviceMmu, Hypervisor) {
        let path = std::env::temp_dir().join(format!(
            "refhyp-mmu-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(FRAMES * PAGE as u64).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            FRAMES as usize * PAGE,
            Some(FileOffset::new(file.try_clone().unwrap(), 0)),
        )])
        .unwrap();
        let hyp = Hypervisor::new(Config {
            ram: std::iter::once(0..FRAMES << PAGE_SHIFT).collect(),
        });
        let mut mmu = DeviceMmu::new(FRAMES, true, stale_tlb);
        mmu.adopt(&mem);
        (file, mem, mmu, hyp)
    }

    pub(super) fn setup_pub() -> (std::fs::File, GuestMemoryMmap<()>, DeviceMmu, Hypervisor) {
        setup(false)
    }

    fn read_file(file: &std::fs::File, gfn: u64) -> u64 {
        let mut b = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut b, gfn << PAGE_SHIFT).unwrap();
        u64::from_le_bytes(b)
    }

    /// Shares frame `gfn` directly (`SHARE`) with `perm`, or unshares it.
    fn direct(hyp: &mut Hypervisor, gfn: u64, perm: u64) {
        let ram = VecRam::new(0..FRAMES << PAGE_SHIFT);
        // INIT once: table at frame 0, ring at 1..3, no pool.
        if !hyp.is_initialised() {
            assert_eq!(hyp.call(&ram, 1, [0, FRAMES, 4096, 1, 0, 0]).status, 0);
        }
        let (func, args) = if perm == 0 {
            (4, [gfn, 1, 0, 0, 0, 0])
        } else {
            (3, [gfn, 1, perm, 0, 0, 0])
        };
        assert_eq!(hyp.call(&ram, func, args).status, 0);
    }

    #[test]
    fn raw_access_to_an_unshared_page_faults_and_is_counted() {
        let (file, mem, mut mmu, mut hyp) = setup(false);
        std::os::unix::fs::FileExt::write_all_at(&file, &42u64.to_le_bytes(), 10 * 4096).unwrap();
        let before = thread_faults();
        // Through the backend's own mapping, not CheckedMemory.
        let v: u64 = mem.read_obj(GuestAddress(10 * 4096)).unwrap();
        assert_eq!(v, 0, "a private page was read");
        mem.write_obj(7u64, GuestAddress(10 * 4096)).unwrap();
        assert_eq!(read_file(&file, 10), 42, "a private page was written");
        assert!(thread_faults() > before);
        assert!(mmu.faults() >= 1);
        mmu.restore_now();
        // Shared read-only: reads see the guest's bytes, writes do not land.
        direct(&mut hyp, 10, 1);
        mmu.sync(&mut hyp, true);
        let v: u64 = mem.read_obj(GuestAddress(10 * 4096)).unwrap();
        assert_eq!(v, 42);
        let faults = mmu.faults();
        mem.write_obj(7u64, GuestAddress(10 * 4096)).unwrap();
        assert_eq!(read_file(&file, 10), 42, "a read-only page was written");
        assert_eq!(mmu.faults(), faults + 1);
        mmu.restore_now();
        // Read-write: both land.
        direct(&mut hyp, 10, 3);
        mmu.sync(&mut hyp, true);
        mem.write_obj(7u64, GuestAddress(10 * 4096)).unwrap();
        assert_eq!(read_file(&file, 10), 7);
        assert_eq!(mmu.faults(), faults + 1);
    }

    #[test]
    fn reductions_wait_for_an_exit_that_may_revoke() {
        let (_file, _mem, mut mmu, mut hyp) = setup(false);
        direct(&mut hyp, 12, 3);
        mmu.sync(&mut hyp, false);
        assert_eq!(mmu.probe(12, true), Some(true), "grants are immediate");
        direct(&mut hyp, 12, 0);
        mmu.sync(&mut hyp, false);
        assert_eq!(
            mmu.probe(12, true),
            Some(true),
            "held back inside a request"
        );
        mmu.sync(&mut hyp, true);
        assert_eq!(mmu.probe(12, false), Some(false));
        assert_eq!(mmu.probe(12, true), Some(false));
        assert_eq!(mmu.faults(), 0, "probes are not device faults");
        assert_eq!(mmu.probe_faults(), 2);
    }

    #[test]
    fn a_stale_tlb_keeps_reductions_until_an_invalidation() {
        let (_file, _mem, mut mmu, mut hyp) = setup(true);
        let ram = VecRam::new(0..FRAMES << PAGE_SHIFT);
        assert_eq!(hyp.call(&ram, 1, [0, FRAMES, 4096, 1, 0, 0]).status, 0);
        // Frame 20 read-write through the table, then cleared and drained
        // on an exit: no invalidation yet.
        ram.write(20, &[3]).unwrap();
        let rec = |index: u64| {
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&20u64.to_le_bytes());
            r[8..12].copy_from_slice(&1u32.to_le_bytes());
            r[12..].copy_from_slice(&((index + 1) as u32).to_le_bytes());
            ram.write(4096 + 4096 + 16 * (index % 2), &r).unwrap();
            ram.write(4096, &(index + 1).to_le_bytes()).unwrap();
        };
        rec(0);
        hyp.drain(&ram);
        mmu.sync(&mut hyp, true);
        assert_eq!(mmu.probe(20, true), Some(true));
        ram.write(20, &[0]).unwrap();
        rec(1);
        hyp.drain(&ram);
        mmu.sync(&mut hyp, true);
        assert_eq!(hyp.host_perm(20).bits(), 0);
        assert_eq!(mmu.probe(20, true), Some(true), "a stale translation");
        assert_eq!(mmu.held_back(), &[20]);
        // SYNC invalidates: the translation is gone.
        assert_eq!(hyp.call(&ram, 2, [0; 6]).status, 0);
        mmu.sync(&mut hyp, true);
        assert_eq!(mmu.probe(20, false), Some(false));
        assert!(mmu.held_back().is_empty());
    }

    /// ABI 2.2: read-only to write-only is a reduction (read) and a grant
    /// (write) at once; the grant may not wait for the reduction.
    #[test]
    fn a_grant_is_not_held_back_with_a_reduction() {
        for (stale_tlb, may_revoke) in [(true, true), (false, false)] {
            let (_file, _mem, mut mmu, mut hyp) = setup(stale_tlb);
            direct(&mut hyp, 22, 1);
            mmu.sync(&mut hyp, true);
            assert_eq!(mmu.probe(22, true), Some(false));
            direct(&mut hyp, 22, 2);
            mmu.sync(&mut hyp, may_revoke);
            assert_eq!(
                mmu.probe(22, true),
                Some(true),
                "write-only after read-only (stale TLB {stale_tlb}): the write was held back"
            );
        }
    }
}

#[cfg(test)]
mod bench {
    #[test]
    #[ignore]
    fn probe_cost() {
        let (_f, _m, mut mmu, _h) = super::tests::setup_pub();
        let t = std::time::Instant::now();
        for i in 0..20000u64 {
            assert_eq!(mmu.probe(30 + i % 8, i % 2 == 0), Some(false));
        }
        eprintln!("denied probe: {:?}", t.elapsed() / 20000);
    }
}
