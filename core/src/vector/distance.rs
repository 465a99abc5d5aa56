//! Distance kernels for every stored element type, and half-float conversion.
//!
//! The kernels are written so the compiler vectorises them (independent
//! per-lane accumulators over fixed-width chunks). Each is compiled twice on
//! x86-64, once for the baseline and once with AVX2+FMA, and the best one the
//! CPU supports is picked once at run time. On aarch64 the baseline already
//! has NEON.

use std::sync::OnceLock;

const LANES: usize = 32;

/// Converts IEEE binary16 bits to `f32` (exact for finite values; branch-free
/// so it vectorises). Infinities and NaNs are not preserved: inputs carrying
/// them are refused before they reach a kernel.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    // Re-bias the exponent by multiplying by 2^112; handles subnormals too.
    let mag = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | sign)
}

/// Converts an `f32` to IEEE binary16 bits, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let r = if rem > mid || (rem == mid && half & 1 == 1) {
            half + 1
        } else {
            half
        };
        return sign | r as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let r = if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        half + 1
    } else {
        half
    };
    sign | r as u16
}

#[inline(always)]
fn reduce(acc: [f32; LANES], tail: f32) -> f32 {
    let mut s = [0f32; 8];
    for (i, a) in acc.iter().enumerate() {
        s[i % 8] += a;
    }
    (s[0] + s[4]) + (s[1] + s[5]) + (s[2] + s[6]) + (s[3] + s[7]) + tail
}

macro_rules! kernel {
    ($name:ident, $t:ty, |$a:ident, $b:ident, $s:ident| $body:expr) => {
        #[inline(always)]
        fn $name(a: &[f32], b: &[$t], $s: f32) -> f32 {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let mut acc = [0f32; LANES];
            let ca = a.chunks_exact(LANES);
            let cb = b.chunks_exact(LANES);
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..LANES {
                    let $a = x[i];
                    let $b = y[i];
                    acc[i] += $body;
                }
            }
            let mut tail = 0f32;
            for (&$a, &$b) in ra.iter().zip(rb) {
                tail += $body;
            }
            reduce(acc, tail)
        }
    };
}

kernel!(dot_f32_g, f32, |x, y, _s| x * y);
kernel!(l2_f32_g, f32, |x, y, _s| (x - y) * (x - y));
kernel!(dot_f16_g, u16, |x, y, _s| x * f16_to_f32(y));
kernel!(l2_f16_g, u16, |x, y, _s| {
    let d = x - f16_to_f32(y);
    d * d
});
kernel!(dot_i8_g, i8, |x, y, _s| x * y as f32);
kernel!(l2_i8_g, i8, |x, y, s| {
    let d = x - y as f32 * s;
    d * d
});

/// The set of kernels chosen for this CPU.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot_f32: fn(&[f32], &[f32], f32) -> f32,
    pub l2_f32: fn(&[f32], &[f32], f32) -> f32,
    pub dot_f16: fn(&[f32], &[u16], f32) -> f32,
    pub l2_f16: fn(&[f32], &[u16], f32) -> f32,
    pub dot_i8: fn(&[f32], &[i8], f32) -> f32,
    pub l2_i8: fn(&[f32], &[i8], f32) -> f32,
    /// Name of the instruction set in use.
    pub isa: &'static str,
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    macro_rules! wrap {
        ($name:ident, $generic:ident, $t:ty) => {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn inner(a: &[f32], b: &[$t], s: f32) -> f32 {
                crate::vector::distance::$generic(a, b, s)
            }
            pub(crate) fn $name(a: &[f32], b: &[$t], s: f32) -> f32 {
                // SAFETY: these functions are only installed in `Kernels` after
                // `is_x86_feature_detected!` confirmed AVX2 and FMA.
                unsafe { inner(a, b, s) }
            }
        };
    }
    pub(super) mod dot_f32 {
        wrap!(run, dot_f32_g, f32);
    }
    pub(super) mod l2_f32 {
        wrap!(run, l2_f32_g, f32);
    }
    pub(super) mod dot_f16 {
        wrap!(run, dot_f16_g, u16);
    }
    pub(super) mod l2_f16 {
        wrap!(run, l2_f16_g, u16);
    }
    pub(super) mod dot_i8 {
        wrap!(run, dot_i8_g, i8);
    }
    pub(super) mod l2_i8 {
        wrap!(run, l2_i8_g, i8);
    }
}

/// Half-float kernels using the F16C conversion instruction.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn kernel<const L2: bool>(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n <= len of both slices, and the loads are unaligned.
            let (x0, x1, y0, y1) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8) as *const __m128i)),
                )
            };
            if L2 {
                let d0 = _mm256_sub_ps(x0, y0);
                let d1 = _mm256_sub_ps(x1, y1);
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            } else {
                acc0 = _mm256_fmadd_ps(x0, y0, acc0);
                acc1 = _mm256_fmadd_ps(x1, y1, acc1);
            }
            i += 16;
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds exactly 8 f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc0, acc1)) };
        let mut sum: f32 = lanes.iter().sum();
        for j in i..n {
            let y = super::f16_to_f32(b[j]);
            sum += if L2 {
                (a[j] - y) * (a[j] - y)
            } else {
                a[j] * y
            };
        }
        sum
    }

    pub(crate) fn l2(a: &[f32], b: &[u16], _s: f32) -> f32 {
        // SAFETY: installed only after AVX2, FMA and F16C were detected.
        unsafe { kernel::<true>(a, b) }
    }

    pub(crate) fn dot(a: &[f32], b: &[u16], _s: f32) -> f32 {
        // SAFETY: installed only after AVX2, FMA and F16C were detected.
        unsafe { kernel::<false>(a, b) }
    }
}

fn select() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let f16c = std::arch::is_x86_feature_detected!("f16c");
            return Kernels {
                dot_f32: avx2::dot_f32::run,
                l2_f32: avx2::l2_f32::run,
                dot_f16: if f16c { f16c::dot } else { avx2::dot_f16::run },
                l2_f16: if f16c { f16c::l2 } else { avx2::l2_f16::run },
                dot_i8: avx2::dot_i8::run,
                l2_i8: avx2::l2_i8::run,
                isa: if f16c { "avx2+f16c" } else { "avx2" },
            };
        }
    }
    Kernels {
        dot_f32: dot_f32_g,
        l2_f32: l2_f32_g,
        dot_f16: dot_f16_g,
        l2_f16: l2_f16_g,
        dot_i8: dot_i8_g,
        l2_i8: l2_i8_g,
        isa: if cfg!(target_arch = "aarch64") {
            "neon"
        } else {
            "baseline"
        },
    }
}

/// The kernels for this CPU (chosen on first use).
pub(crate) fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(select)
}

/// The instruction set the distance kernels use on this CPU ("avx2+f16c",
/// "avx2", "neon" or "baseline").
pub fn kernel_isa() -> &'static str {
    kernels().isa
}

/// Euclidean norm.
pub(crate) fn norm(v: &[f32]) -> f32 {
    (kernels().dot_f32)(v, v, 1.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn kernels_match_naive_sums_on_odd_lengths() {
        let k = kernels();
        for n in [1usize, 7, 31, 32, 33, 100, 129] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.7).collect();
            let dot = naive_dot(&a, &b);
            let l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(((k.dot_f32)(&a, &b, 1.0) - dot).abs() < 1e-3 * (1.0 + dot.abs()));
            assert!(((k.l2_f32)(&a, &b, 1.0) - l2).abs() < 1e-3 * (1.0 + l2));
            let h: Vec<u16> = b.iter().map(|&x| f32_to_f16(x)).collect();
            let bh: Vec<f32> = h.iter().map(|&x| f16_to_f32(x)).collect();
            assert!(
                ((k.dot_f16)(&a, &h, 1.0) - naive_dot(&a, &bh)).abs() < 1e-3 * (1.0 + dot.abs())
            );
            let q: Vec<i8> = (0..n).map(|i| (i as i32 % 255 - 127) as i8).collect();
            let s = 0.01f32;
            let bq: Vec<f32> = q.iter().map(|&x| x as f32 * s).collect();
            let want: f32 = a.iter().zip(&bq).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(((k.l2_i8)(&a, &q, s) - want).abs() < 1e-3 * (1.0 + want));
            let want_dot = naive_dot(&a, &bq);
            assert!(((k.dot_i8)(&a, &q, 1.0) * s - want_dot).abs() < 1e-3 * (1.0 + want_dot.abs()));
        }
    }

    #[test]
    fn half_conversion_round_trips() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            2f32.powi(-14),
            2f32.powi(-24),
            f32::from_bits(0x3eaa_a000),
        ] {
            let h = f32_to_f16(x);
            assert_eq!(f16_to_f32(h), x, "{x}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        // Rounds to nearest: 1 + 2^-11 is a tie and goes to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02);
    }
}
