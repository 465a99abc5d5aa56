//! Distance kernels for every stored element type, and half-float conversion.
//!
//! Every kernel takes the query as f32 and the stored elements in their own
//! type (f32, f16 bits, i8 with its scale), and accumulates in f32. On x86-64
//! they are hand-written per instruction set (AVX-512F/BW/VL, AVX2+FMA, F16C)
//! and the best one the CPU supports is picked once at run time; elsewhere
//! (aarch64 included) the portable loops below are used, written with
//! independent per-lane accumulators so the compiler can vectorise them.
//! [`kernel_variants`] lists every implementation this CPU can run, for the
//! tests and `benches/distance.rs`.

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
    pub(super) mod dot_f16 {
        wrap!(run, dot_f16_g, u16);
    }
    pub(super) mod l2_f16 {
        wrap!(run, l2_f16_g, u16);
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

/// Hand-written f32 and i8 kernels (the compiler's vectorisation of the
/// generic loops above shuffles single lanes). Each function is only
/// installed in [`Kernels`] after its features were detected.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn f32_avx2<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8 * j + 8 <= i + 32 <= n, within both slices;
                // unaligned loads.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(pa.add(i + 8 * j)),
                        _mm256_loadu_ps(pb.add(i + 8 * j)),
                    )
                };
                *acc = if L2 {
                    let d = _mm256_sub_ps(x, y);
                    _mm256_fmadd_ps(d, d, *acc)
                } else {
                    _mm256_fmadd_ps(x, y, *acc)
                };
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n; unaligned loads.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc[0] = if L2 {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc[0])
            } else {
                _mm256_fmadd_ps(x, y, acc[0])
            };
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        // SAFETY: the features hsum256 needs are enabled here.
        let mut sum = unsafe { hsum256(v) };
        for j in i..n {
            sum += if L2 {
                (a[j] - b[j]) * (a[j] - b[j])
            } else {
                a[j] * b[j]
            };
        }
        sum
    }

    /// The mask of the first `left` lanes of 16 (`left` in 1..=16): the
    /// AVX-512 kernels' tail is one masked step.
    #[inline]
    fn first_lanes(left: usize) -> __mmask16 {
        if left >= 16 {
            0xffff
        } else {
            (1u16 << left) - 1
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn f32_avx512<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n, within both slices; unaligned loads.
            let (x0, y0, x1, y1) = unsafe {
                (
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pb.add(i)),
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                )
            };
            if L2 {
                let d0 = _mm512_sub_ps(x0, y0);
                let d1 = _mm512_sub_ps(x1, y1);
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            } else {
                acc0 = _mm512_fmadd_ps(x0, y0, acc0);
                acc1 = _mm512_fmadd_ps(x1, y1, acc1);
            }
            i += 32;
        }
        while i < n {
            // Up to 16 remaining lanes; masked-off lanes are not read.
            let left = (n - i).min(16);
            let m = first_lanes(left);
            // SAFETY: the mask enables only lanes i .. i + left <= n, and
            // masked loads do not touch disabled lanes.
            let (x, y) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm512_maskz_loadu_ps(m, pb.add(i)),
                )
            };
            if L2 {
                let d = _mm512_sub_ps(x, y);
                acc0 = _mm512_fmadd_ps(d, d, acc0);
            } else {
                acc0 = _mm512_fmadd_ps(x, y, acc0);
            }
            i += left;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// `sum(a * b)` or `sum((a - b * s)^2)` for i8 `b`, 8 lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn i8_avx2<const L2: bool>(a: &[f32], b: &[i8], s: f32) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let scale = _mm256_set1_ps(s);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n: 16 f32 of `a` and 16 i8 of `b` (loaded as
            // two 8-byte halves) are in bounds; unaligned loads.
            let (x0, x1, q0, q1) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm_loadl_epi64(pb.add(i) as *const __m128i),
                    _mm_loadl_epi64(pb.add(i + 8) as *const __m128i),
                )
            };
            let y0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
            let y1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
            if L2 {
                let d0 = _mm256_sub_ps(x0, _mm256_mul_ps(y0, scale));
                let d1 = _mm256_sub_ps(x1, _mm256_mul_ps(y1, scale));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            } else {
                acc0 = _mm256_fmadd_ps(x0, y0, acc0);
                acc1 = _mm256_fmadd_ps(x1, y1, acc1);
            }
            i += 16;
        }
        // SAFETY: the features hsum256 needs are enabled here.
        let mut sum = unsafe { hsum256(_mm256_add_ps(acc0, acc1)) };
        for j in i..n {
            let y = b[j] as f32;
            sum += if L2 {
                (a[j] - y * s) * (a[j] - y * s)
            } else {
                a[j] * y
            };
        }
        sum
    }

    /// `sum(a * b)` or `sum((a - b)^2)` for f16 `b`, 32 lanes per step:
    /// VCVTPH2PS (AVX-512F) widens 16 halves at a time, the arithmetic is
    /// f32 FMA, and the tail is one masked step (no scalar loop).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn f16_avx512<const L2: bool>(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n: 32 f32 of `a` and 32 u16 of `b` are in
            // bounds; unaligned loads.
            let (x0, x1, h0, h1) = unsafe {
                (
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm256_loadu_si256(pb.add(i) as *const __m256i),
                    _mm256_loadu_si256(pb.add(i + 16) as *const __m256i),
                )
            };
            let y0 = _mm512_cvtph_ps(h0);
            let y1 = _mm512_cvtph_ps(h1);
            if L2 {
                let d0 = _mm512_sub_ps(x0, y0);
                let d1 = _mm512_sub_ps(x1, y1);
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            } else {
                acc0 = _mm512_fmadd_ps(x0, y0, acc0);
                acc1 = _mm512_fmadd_ps(x1, y1, acc1);
            }
            i += 32;
        }
        while i < n {
            let left = (n - i).min(16);
            let m = first_lanes(left);
            // SAFETY: the mask enables only lanes i .. i + left <= n, and
            // masked loads do not touch disabled lanes.
            let (x, h) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm256_maskz_loadu_epi16(m, pb.add(i) as *const i16),
                )
            };
            let y = _mm512_cvtph_ps(h);
            if L2 {
                let d = _mm512_sub_ps(x, y);
                acc0 = _mm512_fmadd_ps(d, d, acc0);
            } else {
                acc0 = _mm512_fmadd_ps(x, y, acc0);
            }
            i += left;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// `sum(a * b)` or `sum((a - b * s)^2)` for i8 `b`, 32 lanes per step:
    /// VPMOVSXBD + VCVTDQ2PS widen 16 bytes at a time to f32 (the query is
    /// f32, so integer dot products do not apply), and the tail is one
    /// masked step.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn i8_avx512<const L2: bool>(a: &[f32], b: &[i8], s: f32) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let scale = _mm512_set1_ps(s);
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n: 32 f32 of `a` and 32 i8 of `b` are in
            // bounds; unaligned loads.
            let (x0, x1, q0, q1) = unsafe {
                (
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm_loadu_si128(pb.add(i) as *const __m128i),
                    _mm_loadu_si128(pb.add(i + 16) as *const __m128i),
                )
            };
            let y0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0));
            let y1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1));
            if L2 {
                let d0 = _mm512_sub_ps(x0, _mm512_mul_ps(y0, scale));
                let d1 = _mm512_sub_ps(x1, _mm512_mul_ps(y1, scale));
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            } else {
                acc0 = _mm512_fmadd_ps(x0, y0, acc0);
                acc1 = _mm512_fmadd_ps(x1, y1, acc1);
            }
            i += 32;
        }
        while i < n {
            let left = (n - i).min(16);
            let m = first_lanes(left);
            // SAFETY: the mask enables only lanes i .. i + left <= n, and
            // masked loads do not touch disabled lanes.
            let (x, q) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm_maskz_loadu_epi8(m, pb.add(i)),
                )
            };
            let y = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            if L2 {
                let d = _mm512_sub_ps(x, _mm512_mul_ps(y, scale));
                acc0 = _mm512_fmadd_ps(d, d, acc0);
            } else {
                acc0 = _mm512_fmadd_ps(x, y, acc0);
            }
            i += left;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    // Each wrapper is installed in `Kernels` (or listed by
    // `kernel_variants`) only after `is_x86_feature_detected!` confirmed the
    // features its callee enables.
    pub(crate) fn l2_f32_avx2(a: &[f32], b: &[f32], _s: f32) -> f32 {
        // SAFETY: AVX2 and FMA were detected before this was installed.
        unsafe { f32_avx2::<true>(a, b) }
    }
    pub(crate) fn dot_f32_avx2(a: &[f32], b: &[f32], _s: f32) -> f32 {
        // SAFETY: AVX2 and FMA were detected before this was installed.
        unsafe { f32_avx2::<false>(a, b) }
    }
    pub(crate) fn l2_f32_avx512(a: &[f32], b: &[f32], _s: f32) -> f32 {
        // SAFETY: AVX-512F was detected before this was installed.
        unsafe { f32_avx512::<true>(a, b) }
    }
    pub(crate) fn dot_f32_avx512(a: &[f32], b: &[f32], _s: f32) -> f32 {
        // SAFETY: AVX-512F was detected before this was installed.
        unsafe { f32_avx512::<false>(a, b) }
    }
    pub(crate) fn l2_i8_avx2(a: &[f32], b: &[i8], s: f32) -> f32 {
        // SAFETY: AVX2 and FMA were detected before this was installed.
        unsafe { i8_avx2::<true>(a, b, s) }
    }
    pub(crate) fn dot_i8_avx2(a: &[f32], b: &[i8], s: f32) -> f32 {
        // SAFETY: AVX2 and FMA were detected before this was installed.
        unsafe { i8_avx2::<false>(a, b, s) }
    }
    pub(crate) fn l2_f16_avx512(a: &[f32], b: &[u16], _s: f32) -> f32 {
        // SAFETY: AVX-512F, BW and VL were detected before this was installed.
        unsafe { f16_avx512::<true>(a, b) }
    }
    pub(crate) fn dot_f16_avx512(a: &[f32], b: &[u16], _s: f32) -> f32 {
        // SAFETY: AVX-512F, BW and VL were detected before this was installed.
        unsafe { f16_avx512::<false>(a, b) }
    }
    pub(crate) fn l2_i8_avx512(a: &[f32], b: &[i8], s: f32) -> f32 {
        // SAFETY: AVX-512F, BW and VL were detected before this was installed.
        unsafe { i8_avx512::<true>(a, b, s) }
    }
    pub(crate) fn dot_i8_avx512(a: &[f32], b: &[i8], s: f32) -> f32 {
        // SAFETY: AVX-512F, BW and VL were detected before this was installed.
        unsafe { i8_avx512::<false>(a, b, s) }
    }
}

/// What this CPU offers, as far as the kernels care.
#[derive(Clone, Copy)]
struct Features {
    avx2: bool,
    f16c: bool,
    avx512f: bool,
    /// AVX-512 F + BW + VL (masked byte and word loads).
    avx512bw: bool,
}

fn features() -> Features {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        let avx512f = avx2 && has!("avx512f");
        Features {
            avx2,
            f16c: avx2 && has!("f16c"),
            avx512f,
            avx512bw: avx512f && has!("avx512bw") && has!("avx512vl"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Features {
        avx2: false,
        f16c: false,
        avx512f: false,
        avx512bw: false,
    }
}

/// A distance kernel over one stored element type: `(query, stored, scale)`.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum KernelFn {
    F32(fn(&[f32], &[f32], f32) -> f32),
    F16(fn(&[f32], &[u16], f32) -> f32),
    I8(fn(&[f32], &[i8], f32) -> f32),
}

/// One implementation of one kernel, for tests and benchmarks.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct KernelVariant {
    /// Instruction set ("portable", "avx2", "f16c", "avx512").
    pub isa: &'static str,
    /// `true` for the squared L2 kernel, `false` for the dot product (which
    /// cosine and inner product use).
    pub l2: bool,
    pub f: KernelFn,
}

/// Every kernel implementation this CPU can run (not only the selected
/// ones), so tests and benchmarks can compare them. Not a stable API.
#[doc(hidden)]
pub fn kernel_variants() -> Vec<KernelVariant> {
    let v = |isa, l2, f| KernelVariant { isa, l2, f };
    let mut out = vec![
        v("portable", true, KernelFn::F32(l2_f32_g)),
        v("portable", false, KernelFn::F32(dot_f32_g)),
        v("portable", true, KernelFn::F16(l2_f16_g)),
        v("portable", false, KernelFn::F16(dot_f16_g)),
        v("portable", true, KernelFn::I8(l2_i8_g)),
        v("portable", false, KernelFn::I8(dot_i8_g)),
    ];
    let _f = features();
    #[cfg(target_arch = "x86_64")]
    {
        if _f.avx2 {
            out.extend([
                v("avx2", true, KernelFn::F32(x86::l2_f32_avx2)),
                v("avx2", false, KernelFn::F32(x86::dot_f32_avx2)),
                v("avx2", true, KernelFn::F16(avx2::l2_f16::run)),
                v("avx2", false, KernelFn::F16(avx2::dot_f16::run)),
                v("avx2", true, KernelFn::I8(x86::l2_i8_avx2)),
                v("avx2", false, KernelFn::I8(x86::dot_i8_avx2)),
            ]);
        }
        if _f.f16c {
            out.extend([
                v("f16c", true, KernelFn::F16(f16c::l2)),
                v("f16c", false, KernelFn::F16(f16c::dot)),
            ]);
        }
        if _f.avx512f {
            out.extend([
                v("avx512", true, KernelFn::F32(x86::l2_f32_avx512)),
                v("avx512", false, KernelFn::F32(x86::dot_f32_avx512)),
            ]);
        }
        if _f.avx512bw {
            out.extend([
                v("avx512", true, KernelFn::F16(x86::l2_f16_avx512)),
                v("avx512", false, KernelFn::F16(x86::dot_f16_avx512)),
                v("avx512", true, KernelFn::I8(x86::l2_i8_avx512)),
                v("avx512", false, KernelFn::I8(x86::dot_i8_avx512)),
            ]);
        }
    }
    out
}

fn select() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        let f = features();
        if f.avx2 {
            let no512 = std::env::var_os("EDGESTORE_NO_AVX512").is_some();
            let avx512 = f.avx512f && !no512;
            let avx512bw = f.avx512bw && !no512;
            return Kernels {
                dot_f32: if avx512 {
                    x86::dot_f32_avx512
                } else {
                    x86::dot_f32_avx2
                },
                l2_f32: if avx512 {
                    x86::l2_f32_avx512
                } else {
                    x86::l2_f32_avx2
                },
                dot_f16: if avx512bw {
                    x86::dot_f16_avx512
                } else if f.f16c {
                    f16c::dot
                } else {
                    avx2::dot_f16::run
                },
                l2_f16: if avx512bw {
                    x86::l2_f16_avx512
                } else if f.f16c {
                    f16c::l2
                } else {
                    avx2::l2_f16::run
                },
                dot_i8: if avx512bw {
                    x86::dot_i8_avx512
                } else {
                    x86::dot_i8_avx2
                },
                l2_i8: if avx512bw {
                    x86::l2_i8_avx512
                } else {
                    x86::l2_i8_avx2
                },
                isa: match (avx512, avx512bw, f.f16c) {
                    (_, true, _) => "avx512",
                    (true, false, true) => "avx512+avx2+f16c",
                    (true, false, false) => "avx512+avx2",
                    (false, _, true) => "avx2+f16c",
                    (false, _, false) => "avx2",
                },
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

/// The instruction set the distance kernels use on this CPU ("avx512",
/// "avx512+avx2+f16c", "avx2+f16c", "avx2", "neon" or "baseline").
pub fn kernel_isa() -> &'static str {
    kernels().isa
}

/// Asks the CPU to bring the cache line at `p` closer (a hint: `p` need not
/// be valid and nothing is read).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never
        // faults or reads memory architecturally, whatever the address.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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

    /// xorshift64*: deterministic pseudo-random inputs.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [-1, 1) times a power of two in 2^-4 ..= 2^3.
        fn f32(&mut self) -> f32 {
            let r = self.next();
            let u = (r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            u * 2f32.powi((r % 8) as i32 - 4)
        }
    }

    /// The three metrics computed in f64 from the decoded elements `y`:
    /// (L2, cosine, inner product), and the sums of absolute terms that
    /// bound their rounding error.
    fn reference(x: &[f32], y: &[f64]) -> ([f64; 3], [f64; 2]) {
        let (mut l2, mut dot, mut nx, mut ny, mut abs_dot) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (&a, &b) in x.iter().zip(y) {
            let a = a as f64;
            l2 += (a - b) * (a - b);
            dot += a * b;
            abs_dot += (a * b).abs();
            nx += a * a;
            ny += b * b;
        }
        let den = (nx * ny).sqrt();
        let cos = if den > 0.0 { 1.0 - dot / den } else { 1.0 };
        ([l2, cos, -dot], [l2, abs_dot])
    }

    /// Every kernel implementation this CPU can run (not only the selected
    /// ones) against a scalar f64 reference, for every length 0..=80 and
    /// longer ones around the vector widths, on L2, cosine and inner
    /// product.
    #[test]
    fn every_kernel_variant_matches_the_scalar_reference() {
        let variants = kernel_variants();
        let mut lens: Vec<usize> = (0..=80).collect();
        lens.extend([
            95, 96, 97, 127, 128, 129, 255, 256, 257, 768, 1000, 1023, 1536, 4099,
        ]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = std::collections::BTreeMap::<(&str, bool, &str), usize>::new();
        for &n in &lens {
            for round in 0..3 {
                let mut x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                let mut yf: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
                // A large first and last element: a kernel that drops or
                // doubles either end (tail handling) is far off.
                if n > 0 && round == 1 {
                    x[n - 1] = 40.0;
                    yf[n - 1] = -30.0;
                    x[0] = -25.0;
                }
                let yh: Vec<u16> = yf.iter().map(|&v| f32_to_f16(v)).collect();
                let yq: Vec<i8> = (0..n).map(|_| rng.next() as u8 as i8).collect();
                let scale = 0.001 + (rng.next() % 1000) as f32 * 1e-4;
                let dec_f32: Vec<f64> = yf.iter().map(|&v| v as f64).collect();
                let dec_f16: Vec<f64> = yh.iter().map(|&h| f16_to_f32(h) as f64).collect();
                let dec_i8: Vec<f64> = yq.iter().map(|&q| q as f64 * scale as f64).collect();
                let nx = x.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
                for var in &variants {
                    let (ty, got, dec) = match var.f {
                        KernelFn::F32(f) => ("f32", f(&x, &yf, 1.0) as f64, &dec_f32),
                        KernelFn::F16(f) => ("f16", f(&x, &yh, 1.0) as f64, &dec_f16),
                        // The dot kernel leaves the scale to the caller.
                        KernelFn::I8(f) if var.l2 => ("i8", f(&x, &yq, scale) as f64, &dec_i8),
                        KernelFn::I8(f) => ("i8", f(&x, &yq, 1.0) as f64 * scale as f64, &dec_i8),
                    };
                    let (want, bound) = reference(&x, dec);
                    // Rounding: a few f32 ulps per summed term, relative to
                    // the sum of absolute terms (and never below 1e-30).
                    let eps = (n as f64 / 8.0 + 8.0) * f32::EPSILON as f64;
                    let ny = dec.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let ctx = format!(
                        "{} {} {ty} n={n} round={round}",
                        var.isa,
                        if var.l2 { "l2" } else { "dot" }
                    );
                    if var.l2 {
                        let tol = eps * bound[0] + 1e-30;
                        assert!(
                            (got - want[0]).abs() <= tol,
                            "{ctx} L2: {got} vs {}",
                            want[0]
                        );
                    } else {
                        let tol = eps * bound[1] + 1e-30;
                        // Inner product distance is -dot.
                        assert!(
                            (-got - want[2]).abs() <= tol,
                            "{ctx} IP: {} vs {}",
                            -got,
                            want[2]
                        );
                        // Cosine as the index computes it, from the kernel's dot.
                        let den = nx * ny;
                        let cos = if den > 0.0 { 1.0 - got / den } else { 1.0 };
                        let ctol = if den > 0.0 { tol / den } else { 0.0 } + 1e-12;
                        assert!(
                            (cos - want[1]).abs() <= ctol,
                            "{ctx} cosine: {cos} vs {}",
                            want[1]
                        );
                    }
                    *checked.entry((var.isa, var.l2, ty)).or_default() += 1;
                }
            }
        }
        // Every variant ran on every input.
        assert!(
            checked.values().all(|&c| c == lens.len() * 3),
            "{checked:?}"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            for ty in ["f32", "f16", "i8"] {
                assert!(
                    checked.contains_key(&("avx512", true, ty)),
                    "avx512 {ty} not tested"
                );
            }
        }
    }

    /// The selected kernels are among the variants tested above and agree
    /// with them exactly.
    #[test]
    fn selected_kernels_are_listed_variants() {
        let k = kernels();
        let (mut x, mut h, mut q) = (vec![0f32; 77], vec![0u16; 77], vec![0i8; 77]);
        let mut rng = Rng(7);
        for i in 0..77 {
            x[i] = rng.f32();
            h[i] = f32_to_f16(rng.f32());
            q[i] = rng.next() as u8 as i8;
        }
        let y: Vec<f32> = h.iter().map(|&v| f16_to_f32(v)).collect();
        let same = |ty: &str, l2: bool, got: f32| {
            kernel_variants().iter().any(|v| {
                v.l2 == l2
                    && match v.f {
                        KernelFn::F32(f) => {
                            ty == "f32" && f(&x, &y, 1.0).to_bits() == got.to_bits()
                        }
                        KernelFn::F16(f) => {
                            ty == "f16" && f(&x, &h, 1.0).to_bits() == got.to_bits()
                        }
                        KernelFn::I8(f) => ty == "i8" && f(&x, &q, 0.5).to_bits() == got.to_bits(),
                    }
            })
        };
        assert!(same("f32", true, (k.l2_f32)(&x, &y, 1.0)));
        assert!(same("f32", false, (k.dot_f32)(&x, &y, 1.0)));
        assert!(same("f16", true, (k.l2_f16)(&x, &h, 1.0)));
        assert!(same("f16", false, (k.dot_f16)(&x, &h, 1.0)));
        assert!(same("i8", true, (k.l2_i8)(&x, &q, 0.5)));
        assert!(same("i8", false, (k.dot_i8)(&x, &q, 0.5)));
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
