//! Gets every wasm module into the browser's compiled-code cache.
//!
//! Chromium compiles wasm lazily, a function when it first runs, and keeps
//! a module's compiled code for the next tab only once V8's optimising
//! compiler has made 1,000 bytes of code for it: it then waits until no
//! more has come for 2 s and stores the optimised functions, marking every
//! other function that has run so far; a new tab takes the module from
//! that cache and compiles the marked functions at once, on other threads,
//! instead of one by one on the page's thread as they are first called.
//! A page's start-up runs nothing often enough to be optimised, so without
//! help only the main module was ever stored (something in it happens to
//! get hot) and the chunk and group modules were compiled again in every
//! new tab.
//!
//! So the chunk and each page group's module, once per tab, run a
//! function of their own in the page's idle moments after it is hydrated,
//! a slice at a time, until V8 has optimised it: a few milliseconds of
//! work the first time a module runs; afterwards it comes optimised from
//! the cache and costs less. Each module's function is its own instance
//! of [`churn`] (its `SALT` differs, so no build step can merge two of
//! them), reached only from that module's code, so `wasm-split` leaves it
//! there.
//!
//! The main module gets none: one of its start-up functions is optimised
//! on every load (7.5 KB of code), which is enough, and a second batch of
//! optimised code within the 2 s keeps it from being stored at all (V8
//! then postpones the store by as many seconds as it meant milliseconds:
//! seen in Chromium 156, where the main module stopped being cached once
//! it had a function here too).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

/// Iterations per idle slice (about a millisecond before it is optimised).
const SLICE: u32 = 1_500;
/// Slices in all: V8 optimises a function once it has run about 13 MB of
/// its wasm code (`--wasm-tiering-budget`); these run about twice that.
const SLICES: u32 = 24;

macro_rules! rounds {
    ($s:ident, $salt:expr; $($r:literal)*) => {
        $(
            $s[$r % 4] = ($s[$r % 4] ^ $s[($r + 1) % 4])
                .wrapping_mul($salt | 1)
                .rotate_left(($r * 7 + 3) % 64);
        )*
    };
}

/// Mixes four words: 64 rounds, written out, so that its optimised code
/// is over the 1,000 bytes that make V8 store the module.
#[inline(never)]
fn churn<const SALT: u64>(mut state: [u64; 4], iterations: u32) -> [u64; 4] {
    for _ in 0..iterations {
        rounds!(state, SALT;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
            60 61 62 63);
    }
    state
}

/// Runs `work` in idle moments, `left` more slices.
fn slices(work: fn([u64; 4], u32) -> [u64; 4], left: u32) {
    if left == 0 {
        return;
    }
    leptos::prelude::request_idle_callback(move || {
        black_box(work(black_box([1, 2, 3, 4]), black_box(SLICE)));
        slices(work, left - 1);
    });
}

/// Starts `work` once per tab.
fn once(started: &AtomicBool, work: fn([u64; 4], u32) -> [u64; 4]) {
    if !started.swap(true, Ordering::Relaxed) {
        slices(work, SLICES);
    }
}

static CHUNK: AtomicBool = AtomicBool::new(false);
static DAILY: AtomicBool = AtomicBool::new(false);
static ADMIN: AtomicBool = AtomicBool::new(false);

/// The module of the pages most people use, and the chunk both groups
/// share (called by their views: `lazy_page!`).
pub fn daily_pages() {
    once(&DAILY, churn::<0xD1B5_4A32_D192_ED03>);
    once(&CHUNK, churn::<0xC2B2_AE3D_27D4_EB4F>);
}

/// The administration pages' module, and the shared chunk.
pub fn admin_pages() {
    once(&ADMIN, churn::<0x1656_67B1_9E37_79F9>);
    once(&CHUNK, churn::<0xC2B2_AE3D_27D4_EB4F>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_module_churns_its_own_way() {
        let a = churn::<0xC2B2_AE3D_27D4_EB4F>([1, 2, 3, 4], 3);
        let b = churn::<0xD1B5_4A32_D192_ED03>([1, 2, 3, 4], 3);
        assert_ne!(a, b);
        assert_eq!(a, churn::<0xC2B2_AE3D_27D4_EB4F>([1, 2, 3, 4], 3));
    }
}
