/* Depthwise correlation of interleaved (H, W, C) frames, for small kernels: one kernel per
 * channel (or one for all), the border made as it is read, no padded copy and no split
 * into channel planes.
 *
 * out[r, x, c] = bias[c] + sum over i, j of  w[c, i, j] * src'[r + i*dh - top, x + j*dw - left, c]
 *
 * where src' is the frame extended by the border (constant value, replicate, symmetric,
 * reflect101 or wrap: numpy.pad's modes, for pads within one reflection of the frame).
 * Rows r0 <= r < r1 of the (ho, wo, C) result are computed; a ReLU may follow the bias.
 *
 * Why: cv2.filter2D on a 3-channel float frame copies each row into a padded buffer and
 * runs one kernel pass per row. Here a row of W·C floats is a run of vectors: a block of
 * XB vectors is a whole number of pixels, so lane l of vector b always holds channel
 * (b·VW + l) mod C and one table of weight vectors (per tap, per b) serves every block;
 * R output rows are summed at once, so each input vector loaded feeds up to R rows'
 * accumulators. Rows past the top or bottom are pointers to the border's rows; only the
 * blocks at the left and right edges are copied, into a small scratch row, with the border.
 *
 * Variants per instruction set as in _correlate.c (_shared.h); a plain C loop covers frames
 * narrower than one block.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "_shared.h"

enum { B_CONSTANT = 0, B_REPLICATE = 1, B_SYMMETRIC = 2, B_REFLECT101 = 3, B_WRAP = 4 };
enum { XB = 3 }; /* vectors per block: a block holds XB·VW floats, a multiple of C */

enum { K_FLOAT = 0, K_U8 = 1, K_U16 = 2 }; /* what the source frame holds */

typedef struct {
    const float *src;  /* K_FLOAT */
    const void *raw;   /* K_U8, K_U16: rows are converted to float as they are first read */
    int kind;
    float *out;
    int h, w, c, ho, wo, kh, kw, dh, dw, top, left, border;
    float value;
    const float *w8;   /* (C, kh, kw) weights */
    const float *bias; /* NULL or C floats */
    int relu, shared;
    int accumulate; /* add to what ``out`` holds (before the ReLU) */
    /* the encoder's common policy fused: each finished row also written as bytes here
     * ((ho, wo, C) uint8; NULL: none), |v| first when ``absolute``, NaNs counted */
    uint8_t *bytes;
    int absolute;
    long long *nans;
    /* what a pixel's bytes are: 0 each channel's value; R_L2: one byte, sqrt(a*a + b*b) of
     * its two channels (a reduce {op: l2} after the bank: stages.py's numbers) */
    int reduce;
    /* a pixel of the source holds ``sc`` values; NULL ``mix``: sc == c, taken as they are.
     * Else lane ch of a pixel is the sum over s of mix[ch * sc + s] * value s, as its row is
     * converted: one product, then fused multiply-adds (MIX_ORDER).  A convert {color: gray}
     * folded into the bank, or a one-channel frame replicated into a dense bank's outputs. */
    int sc;
    const float *mix;
} Job;

enum { R_NONE = 0, R_L2 = 1 };

/* Three values v[0..2] mixed by weights w[0..2]: the middle one's product, then the first,
 * then the last, as cv2.cvtColor sums BGR2GRAY on float frames (OpenCV 5.1 here, measured
 * bit for bit: fma(r, cr, fma(b, cb, g * cg))). Other counts sum in channel order. */
#define MIX3(MADD, v, w)                                                                    \
    MADD((float)(v)[2], (w)[2], MADD((float)(v)[0], (w)[0], (float)(v)[1] * (w)[1]))

/* The source index that padded index ``p`` (may be outside [0, n)) reads, or -1 for the
 * constant border. Pads fit within one reflection (checked by the caller). */
static inline int border_index(int p, int n, int border)
{
    if (p >= 0 && p < n)
        return p;
    switch (border) {
    case B_REPLICATE:
        return p < 0 ? 0 : n - 1;
    case B_SYMMETRIC:
        p = p < 0 ? -p - 1 : 2 * n - 1 - p;
        break;
    case B_REFLECT101:
        p = p < 0 ? -p : 2 * n - 2 - p;
        break;
    case B_WRAP:
        p = p < 0 ? p + n : p - n;
        break;
    default:
        return -1;
    }
    return p < 0 ? 0 : p >= n ? n - 1 : p; /* a guard: callers keep pads within reach */
}

/* Per-call tables: weight vectors per tap and vector of a block (lane pattern of the
 * channels), the bias of each lane, and a row of the constant border. */
typedef struct {
    float *wtab;  /* [kh·kw][XB·VW] (none for a shared kernel), then btab */
    float *btab;  /* [XB·VW] */
    float *crow;  /* a row of W·C floats of ``value`` (the constant border), else NULL */
    float *scratch; /* edge blocks: [rows][span] */
    float *obuf;    /* a last partial block's outputs: [R][XB·VW] */
    int span;
    struct RowCache *cache; /* an integer source's rows as floats, else NULL */
    /* rows written as bytes and nothing else needing their floats after: the floats of
     * R rows go here, not into the frame-sized result (never written then: 25 MB of
     * stores to memory a 1080p colour frame saved), else NULL */
    float *orows;
} Tables;

/* An integer frame's rows, converted to float as they are first read: each padded row p
 * sits in slot p mod ``slots``, and ``slots`` covers the rows one window spans, so a
 * window's rows never share a slot and a row stays while windows slide over it. Only
 * floats a..b of a row are converted (the separable method's strip of columns). So no
 * float copy of the frame is made: 720p x 3 at k = 3, 3.1 -> 2.0 ms (README). */
typedef struct RowCache {
    float *rows;
    int *tags; /* the padded row each slot holds, or INT_MIN */
    int slots;
    ptrdiff_t a, b;
} RowCache;

/* Output row q of the block gets tap (i, j) of the window row loaded into v. */
#define DW_TAP(SHARED, VW, I, J, Q)                                                         \
    do {                                                                                    \
        if (SHARED) {                                                                       \
            const float s_ = jb->w8[(I) * kw + (J)];                                        \
            for (int b = 0; b < XB; b++)                                                    \
                acc[Q][b] += s_ * v[b];                                                     \
        } else {                                                                            \
            const V *wv = (const V *)(tb->wtab + (size_t)((I) * kw + (J)) * XB * (VW));     \
            for (int b = 0; b < XB; b++)                                                    \
                acc[Q][b] += wv[b] * v[b];                                                  \
        }                                                                                   \
    } while (0)

/* Window row T's taps into output rows Q0 <= q < Q1 of the block. */
#define DW_ROW(SHARED, VW, T, Q0, Q1)                                                       \
    do {                                                                                    \
        const float *row_ = rows[T] + off;                                                  \
        for (int j = 0; j < kw; j++) {                                                      \
            V v[XB];                                                                        \
            for (int b = 0; b < XB; b++)                                                    \
                v[b] = *(const V *)(row_ + j * step + b * (VW));                            \
            _Pragma("GCC unroll 16") for (int q_ = (Q0); q_ < (Q1); q_++)                   \
                DW_TAP(SHARED, VW, (T) - q_, j, q_);                                        \
        }                                                                                   \
    } while (0)

/* n blocks side by side, each XB vectors of R output rows, from float ``off0`` of the
 * window's input rows (rows[t] + off0) into float ``ooff0`` of the output rows (outs[q]):
 * R + kh - 1 input rows (dh = 1) when R > 1, else kh (row i·dh). One call a run of blocks
 * (not a call a block, with its set-up: 0.7x the time on a 1080p Gaussian 5x5). */
#define BLOCK(NAME, ATTR, VW, R, SHARED)                                                    \
    ATTR static void NAME(const Job *jb, const Tables *tb, const float *const *rows,        \
                          ptrdiff_t off0, float *const *outs, ptrdiff_t ooff0, ptrdiff_t n) \
    {                                                                                       \
        typedef float V ISA_VECTOR(VW);                                                     \
        typedef int M ISA_VECTOR(VW);                                                       \
        const int kh = jb->kh, kw = jb->kw, nt = (R) > 1 ? (R) + kh - 1 : kh;               \
        const ptrdiff_t step = (ptrdiff_t)jb->dw * jb->c;                                   \
        const int accumulate = jb->accumulate, relu = jb->relu;                             \
        for (ptrdiff_t n_ = 0; n_ < n; n_++) {                                              \
            const ptrdiff_t off = off0 + n_ * XB * (VW), ooff = ooff0 + n_ * XB * (VW);     \
            V acc[R][XB];                                                                   \
            /* zeroed in a loop: a memset became a rep stos to the stack */                  \
            for (int q = 0; q < (R); q++)                                                   \
                for (int b = 0; b < XB; b++)                                                \
                    acc[q][b] = (V){0};                                                     \
            if (kh == 1) { /* R rows side by side (a horizontal pass) */                    \
                _Pragma("GCC unroll 16") for (int p = 0; p < (R); p++)                      \
                    DW_ROW(SHARED, VW, p, p, p + 1);                                        \
            } else if (kh >= (R) - 1) {                                                     \
                /* window row t adds into rows q = t - kh + 1 .. t of the R: the first R - 1 \
                 * and last R - 1 window rows (into fewer rows) unrolled, so no test is made \
                 * per row (a multiply by a zero weight instead would spread a NaN) */      \
                _Pragma("GCC unroll 16") for (int u = 0; u < (R) - 1; u++)                  \
                    DW_ROW(SHARED, VW, u, 0, u + 1);                                        \
                for (int t = (R) - 1; t < kh; t++)                                          \
                    DW_ROW(SHARED, VW, t, 0, (R));                                          \
                _Pragma("GCC unroll 16") for (int u = 1; u < (R); u++)                      \
                    DW_ROW(SHARED, VW, kh - 1 + u, u, (R));                                 \
            } else {                                                                        \
                for (int t = 0; t < nt; t++) {                                              \
                    const float *row = rows[t] + off;                                       \
                    for (int j = 0; j < kw; j++) {                                          \
                        V v[XB];                                                            \
                        for (int b = 0; b < XB; b++)                                        \
                            v[b] = *(const V *)(row + j * step + b * (VW));                 \
                        for (int q = 0; q < (R); q++)                                       \
                            if (t - q >= 0 && t - q < kh)                                   \
                                DW_TAP(SHARED, VW, t - q, j, q);                            \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
            const V *bv = (const V *)tb->btab;                                              \
            for (int q = 0; q < (R); q++)                                                   \
                for (int b = 0; b < XB; b++) {                                              \
                    V *dst = (V *)(outs[q] + ooff + b * (VW));                              \
                    V y = acc[q][b] + bv[b];                                                \
                    if (accumulate)                                                         \
                        y += *dst;                                                          \
                    if (relu)                                                               \
                        y = ISA_RELU(y, V, M);                                              \
                    *dst = y;                                                               \
                }                                                                           \
        }                                                                                   \
    }

typedef void (*BlockFn)(const Job *, const Tables *, const float *const *, ptrdiff_t,
                        float *const *, ptrdiff_t, ptrdiff_t);

/* The last ``n`` floats (fewer than a block) of R output rows at ``ooff``, by a whole
 * block computed into tb->obuf from what ``outs`` holds there (for ``accumulate``), then
 * copied back: a block ending at the row's end would overlap the one before, and add the
 * overlap twice. The input rows are read a block past ``off`` (the caller makes them). */
static void tail(BlockFn fn, int block, int nr, const Job *jb, const Tables *tb,
                 const float *const *rows, ptrdiff_t off, float *const *outs, ptrdiff_t ooff,
                 ptrdiff_t n)
{
    float *bufs[nr];
    for (int q = 0; q < nr; q++) {
        bufs[q] = tb->obuf + (size_t)q * block;
        memcpy(bufs[q], outs[q] + ooff, sizeof(float) * n);
        memset(bufs[q] + n, 0, sizeof(float) * (block - n));
    }
    fn(jb, tb, rows, off, bufs, 0, 1);
    for (int q = 0; q < nr; q++)
        memcpy(outs[q] + ooff, bufs[q], sizeof(float) * n);
}

/* Blocks of ``fn`` over ``len`` floats (at least one block) from ``off`` / ``ooff``: whole
 * blocks, then one ending at ``len`` that overlaps them, or, where the job adds into its
 * output, a ``tail`` (its input rows must then be readable a block past ``len``). */
static void sweep(BlockFn fn, int block, int nr, const Job *jb, const Tables *tb,
                  const float *const *rows, ptrdiff_t off, float *const *outs, ptrdiff_t ooff,
                  ptrdiff_t len)
{
    const ptrdiff_t whole = len - len % block;
    fn(jb, tb, rows, off, outs, ooff, whole / block);
    if (whole == len)
        return;
    if (jb->accumulate)
        tail(fn, block, nr, jb, tb, rows, off + whole, outs, ooff + whole, len - whole);
    else
        fn(jb, tb, rows, off + len - block, outs, ooff + len - block, 1);
}

typedef struct {
    BlockFn rows[2][2]; /* [shared][0: R rows, 1: one row] */
    int vw, r;
} Isa;

#define ISA(PREFIX, ATTR, VW, R)                                                            \
    BLOCK(PREFIX##_rs, ATTR, VW, R, 1)                                                      \
    BLOCK(PREFIX##_1s, ATTR, VW, 1, 1)                                                      \
    BLOCK(PREFIX##_rw, ATTR, VW, R, 0)                                                      \
    BLOCK(PREFIX##_1w, ATTR, VW, 1, 0)                                                      \
    static const Isa PREFIX = {{{PREFIX##_rw, PREFIX##_1w}, {PREFIX##_rs, PREFIX##_1s}}, VW, R};

ISA(generic, , 4, 2)
#ifdef ISA_X86
ISA(avx2, ISA_AVX2_ATTR, 8, 3)
ISA(avx512, ISA_AVX512_ATTR, 16, 4)
#endif

static const Isa *isa_blocks(int isa) { return ISA_PICK(isa, &generic, &avx2, &avx512); }

/* n floats -> n bytes as the encoder's saturate policy over [0, 255] writes them: NaN as 0
 * (counted), |v| first for the abs policy, clipped, rounded half to even (OpenCV's
 * saturate_cast; the scalar loop by the 1.5·2^23 trick, exact below 2^22). */
static long long bytes_generic(const float *s, uint8_t *d, ptrdiff_t n, int absolute)
{
    long long nans = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = absolute ? fabsf(s[i]) : s[i];
        nans += v != v;
        v = v > 0.0f ? v : 0.0f; /* NaN -> 0 */
        v = v < 255.0f ? v : 255.0f;
        d[i] = (uint8_t)(int)((v + 12582912.0f) - 12582912.0f);
    }
    return nans;
}

#ifdef ISA_X86
#include <immintrin.h>
/* The same, 32 values a step: max with 0 first (maxps returns its second operand for a
 * NaN), cvtps2dq rounds half to even (MXCSR's default), then packs with saturation. The
 * compiler left the scalar loop scalar: 1080p x 3 in 18 ms, this in about 1. */
ISA_AVX2_ATTR static long long bytes_avx2(const float *s, uint8_t *d, ptrdiff_t n,
                                          int absolute)
{
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(absolute ? 0x7fffffff : -1));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    long long nans = 0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_and_ps(_mm256_loadu_ps(s + i + 8 * k), mask);
            nans += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
            v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
            q[k] = _mm256_cvtps_epi32(v);
        }
        const __m256i lo = _mm256_packs_epi32(q[0], q[1]), hi = _mm256_packs_epi32(q[2], q[3]);
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), order);
        _mm256_storeu_si256((__m256i *)(d + i), bytes);
    }
    return nans + bytes_generic(s + i, d + i, n - i, absolute);
}
#endif

/* Whether this CPU runs the AVX2 (and FMA) variants of the row helpers. */
static int avx2_here(void)
{
    static int avx2 = -1;
    if (avx2 < 0)
        avx2 = isa_supported(ISA_AVX2);
    return avx2;
}

static long long bytes_from(const float *s, uint8_t *d, ptrdiff_t n, int absolute)
{
#ifdef ISA_X86
    if (avx2_here())
        return bytes_avx2(s, d, n, absolute);
#endif
    return bytes_generic(s, d, n, absolute);
}

/* sqrt(a * a + b * b) of ``n`` pairs (a, b) of ``s`` into ``d``: two products, a sum and a
 * square root, each rounded (IEEE), on every CPU the same numbers as numpy's
 * np.sqrt(a * a + b * b) in float32. (cv2.magnitude is not that: up to 2 ulp off the
 * exact value here, and its last bit varied with the arrays' alignment.) */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void magnitude_generic(const float *s, float *d, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const float aa = s[2 * i] * s[2 * i], bb = s[2 * i + 1] * s[2 * i + 1];
        d[i] = sqrtf(aa + bb);
    }
}
#pragma GCC pop_options

#ifdef ISA_X86
ISA_AVX2_ATTR static void magnitude_avx2(const float *s, float *d, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) { /* 8 pairs: a in the even lanes, b in the odd */
        const __m256 v0 = _mm256_loadu_ps(s + 2 * i), v1 = _mm256_loadu_ps(s + 2 * i + 8);
        const __m256 q0 = _mm256_mul_ps(v0, v0), q1 = _mm256_mul_ps(v1, v1);
        /* even lanes: a * a + b * b, b * b brought over from the odd lane */
        const __m256 t0 = _mm256_add_ps(q0, _mm256_permute_ps(q0, 0xB1));
        const __m256 t1 = _mm256_add_ps(q1, _mm256_permute_ps(q1, 0xB1));
        const __m256 even = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(2, 0, 2, 0));
        const __m256 ordered = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(d + i, _mm256_sqrt_ps(ordered));
    }
    magnitude_generic(s + 2 * i, d + i, n - i);
}
#endif

enum { RUN_PIXELS = 256 }; /* pixels of a row reduced at once (on the stack) */

/* A finished row's ``n`` floats (c lanes a pixel) into its bytes as Job.reduce says (each
 * lane, or one magnitude a pixel), by the encoder's common policy; the NaNs met. */
static long long finish_row(const Job *jb, const float *row, uint8_t *dst, ptrdiff_t n)
{
    if (jb->reduce == R_NONE)
        return bytes_from(row, dst, n, jb->absolute);
    long long nans = 0;
    float mag[RUN_PIXELS];
    for (ptrdiff_t p = 0; p < n / 2; p += RUN_PIXELS) {
        const ptrdiff_t k = n / 2 - p < RUN_PIXELS ? n / 2 - p : RUN_PIXELS;
#ifdef ISA_X86
        if (avx2_here())
            magnitude_avx2(row + 2 * p, mag, k);
        else
#endif
            magnitude_generic(row + 2 * p, mag, k);
        nans += bytes_from(mag, dst + p, k, jb->absolute);
    }
    return nans;
}

/* Bytes a row of the byte output holds. */
static inline size_t byte_row(const Job *jb)
{
    return (size_t)jb->wo * (jb->reduce ? 1 : jb->c);
}

/* The mix of pixels p0..p1 of a row of values of type T at ``base`` into ``dst`` (the
 * names MIX_ROW declares). A pair of lanes with the same weights (a gray frame replicated
 * into the edges job's two gradients) is mixed once. */
#define MIX_PIXELS(MADD, T, base)                                                           \
    do {                                                                                    \
        T *s_ = (T *)(base) + at;                                                           \
        float *d_ = dst;                                                                    \
        const int twin = c == 2 && memcmp(m, m + sc, sizeof(float) * sc) == 0;              \
        if (sc == 1 && twin) /* one channel copied into both lanes (weights 1) */           \
            for (ptrdiff_t p = p0; p < p1; p++, d_ += 2)                                    \
                d_[0] = d_[1] = (float)s_[p] * m[0];                                        \
        else if (sc == 1) /* one channel into c lanes: a product each */                    \
            for (ptrdiff_t p = p0; p < p1; p++, d_ += c)                                    \
                for (int ch = 0; ch < c; ch++)                                              \
                    d_[ch] = (float)s_[p] * m[ch];                                          \
        else if (sc == 3 && c == 1) /* BGR to gray */                                       \
            for (ptrdiff_t p = p0; p < p1; p++)                                             \
                *d_++ = MIX3(MADD, s_ + 3 * p, m);                                          \
        else if (sc == 3 && twin)                                                           \
            for (ptrdiff_t p = p0; p < p1; p++, d_ += 2)                                    \
                d_[0] = d_[1] = MIX3(MADD, s_ + 3 * p, m);                                  \
        else if (sc == 3)                                                                   \
            for (ptrdiff_t p = p0; p < p1; p++, d_ += c)                                    \
                for (int ch = 0; ch < c; ch++)                                              \
                    d_[ch] = MIX3(MADD, s_ + 3 * p, m + 3 * ch);                            \
        else                                                                                \
            for (ptrdiff_t p = p0; p < p1; p++, d_ += c)                                    \
                for (int ch = 0; ch < c; ch++) {                                            \
                    const float *w_ = m + ch * sc;                                          \
                    float acc = (float)s_[p * sc] * w_[0];                                  \
                    for (int k = 1; k < sc; k++)                                            \
                        acc = MADD((float)s_[p * sc + k], w_[k], acc);                      \
                    d_[ch] = acc;                                                           \
                }                                                                           \
    } while (0)

/* Lanes of pixels a..b (lane indices, whole pixels) of source row ``r``, mixed (Job.mix),
 * into ``dst`` from its start (c lanes a pixel). MADD: a fused multiply-add (the AVX2
 * variant, as OpenCV's own AVX2 code sums) or a product and a sum (as its SSE code). */
#define MIX_ROW(NAME, ATTR, MADD)                                                           \
    ATTR static void NAME(const Job *jb, int r, float *dst, ptrdiff_t a, ptrdiff_t b)       \
    {                                                                                       \
        const int c = jb->c, sc = jb->sc;                                                   \
        const float *m = jb->mix;                                                           \
        const size_t at = (size_t)r * jb->w * sc;                                           \
        const ptrdiff_t p0 = a / c, p1 = b / c;                                             \
        if (jb->kind == K_FLOAT)                                                            \
            MIX_PIXELS(MADD, const float, jb->src);                                         \
        else if (jb->kind == K_U8)                                                          \
            MIX_PIXELS(MADD, const uint8_t, jb->raw);                                       \
        else                                                                                \
            MIX_PIXELS(MADD, const uint16_t, jb->raw);                                      \
    }

/* One value of the source frame (index ``i`` in its own layout), as a float. */
static inline float value_at(const Job *jb, size_t i)
{
    return jb->kind == K_FLOAT ? jb->src[i]
           : jb->kind == K_U8  ? (float)((const uint8_t *)jb->raw)[i]
                               : (float)((const uint16_t *)jb->raw)[i];
}

#define MADD_PLAIN(x, y, z) ((x) * (y) + (z))
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
MIX_ROW(mix_generic, , MADD_PLAIN)
#pragma GCC pop_options
#ifdef ISA_X86
MIX_ROW(mix_fma, ISA_AVX2_ATTR, __builtin_fmaf)
#endif

static void mix_row(const Job *jb, int r, float *dst, ptrdiff_t a, ptrdiff_t b)
{
#ifdef ISA_X86
    if (avx2_here()) {
        mix_fma(jb, r, dst, a, b);
        return;
    }
#endif
    mix_generic(jb, r, dst, a, b);
}

/* Floats a..b of source row ``r`` of an integer frame into ``dst`` (indexed as the row). */
static void convert_row(const Job *jb, int r, float *dst, ptrdiff_t a, ptrdiff_t b)
{
    if (jb->mix != NULL) {
        mix_row(jb, r, dst + a, a, b);
        return;
    }
    const size_t at = (size_t)r * jb->w * jb->c;
    if (jb->kind == K_U8) {
        const uint8_t *s = (const uint8_t *)jb->raw + at;
        for (ptrdiff_t i = a; i < b; i++)
            dst[i] = (float)s[i];
    } else {
        const uint16_t *s = (const uint16_t *)jb->raw + at;
        for (ptrdiff_t i = a; i < b; i++)
            dst[i] = (float)s[i];
    }
}

/* The source row that padded row ``p`` reads (the constant row past the frame), as floats. */
static inline const float *source_row(const Job *jb, const Tables *tb, int p)
{
    const int r = border_index(p - jb->top, jb->h, jb->border);
    if (r < 0)
        return tb->crow;
    if (jb->kind == K_FLOAT && jb->mix == NULL)
        return jb->src + (size_t)r * jb->w * jb->c;
    RowCache *rc = tb->cache;
    const int slot = ((p % rc->slots) + rc->slots) % rc->slots;
    float *dst = rc->rows + (size_t)slot * jb->w * jb->c;
    if (rc->tags[slot] != p) {
        convert_row(jb, r, dst, rc->a, rc->b);
        rc->tags[slot] = p;
    }
    return dst;
}

/* The cache holds columns a..b (floats) from now on: every slot is emptied. */
static void cache_columns(const Tables *tb, ptrdiff_t a, ptrdiff_t b)
{
    RowCache *rc = tb->cache;
    if (rc == NULL)
        return;
    rc->a = a;
    rc->b = b;
    for (int t = 0; t < rc->slots; t++)
        rc->tags[t] = INT_MIN;
}

/* Lane value ``i`` (index into rows of c lanes a pixel) of the frame, as a float. */
static inline float sample(const Job *jb, size_t i)
{
    if (jb->mix == NULL)
        return value_at(jb, i);
    float lanes[jb->c];
    const size_t pixel = i / jb->c;
    const int r = (int)(pixel / jb->w);
    const ptrdiff_t p = (ptrdiff_t)(pixel % jb->w);
    mix_row(jb, r, lanes, p * jb->c, (p + 1) * jb->c);
    return lanes[i % jb->c];
}

/* ``n`` floats of padded row ``row`` (NULL: the constant row) from float ``s`` into
 * ``dst``, the border made on the way: ``s`` (relative to the frame's left edge, may be
 * negative or past the right edge) and ``n`` are whole pixels. */
static void edge_copy(const Job *jb, const float *row, ptrdiff_t s, int n, float *dst)
{
    const int c = jb->c;
    for (ptrdiff_t px = s / c, end = (s + n) / c; px < end; px++, dst += c) {
        const int x = border_index((int)px, jb->w, jb->border);
        if (x < 0 || row == NULL)
            for (int ch = 0; ch < c; ch++)
                dst[ch] = jb->value;
        else
            memcpy(dst, row + (size_t)x * c, sizeof(float) * c);
    }
}

static void run_rows(const Isa *isa, const Job *jb, const Tables *tb, int r0, int r1)
{
    const int c = jb->c, vw = isa->vw, block = XB * vw;
    const ptrdiff_t width = (ptrdiff_t)jb->wo * c, reach = (ptrdiff_t)(jb->kw - 1) * jb->dw * c;
    const ptrdiff_t frame = (ptrdiff_t)jb->w * c, lead = (ptrdiff_t)jb->left * c;
    const int nmax = isa->r + jb->kh - 1 > jb->kh ? isa->r + jb->kh - 1 : jb->kh;
    const float *rows[nmax], *srows[nmax];
    float *outs[isa->r];
    for (int t = 0; t < nmax; t++)
        srows[t] = tb->scratch + (size_t)t * tb->span;
    for (int r = r0; r < r1;) {
        const int many = isa->r > 1 && jb->dh == 1 && r + isa->r <= r1;
        const int nr = many ? isa->r : 1, nt = many ? nr + jb->kh - 1 : jb->kh;
        const BlockFn fn = isa->rows[jb->shared][many ? 0 : 1];
        for (int t = 0; t < nt; t++) {
            const int p = many ? r + t : r + t * jb->dh;
            rows[t] = source_row(jb, tb, p);
        }
        for (int q = 0; q < nr; q++)
            outs[q] = tb->orows ? tb->orows + (size_t)q * width
                                : jb->out + (size_t)(r + q) * width;
        /* whole blocks k·block, k < whole, are interior (read from the frame itself) for
         * k0 <= k < k1; the others, and a last partial block, are read from the scratch
         * rows with their border made first */
        const ptrdiff_t whole = width / block, k0 = (lead + block - 1) / block;
        ptrdiff_t k1 = frame - reach - block + lead >= 0 ? (frame - reach - block + lead) / block + 1 : 0;
        k1 = k1 < whole ? k1 : whole;
        if (k1 > k0)
            sweep(fn, block, nr, jb, tb, rows, k0 * block - lead, outs, k0 * block,
                  (k1 - k0) * block);
        for (ptrdiff_t k = 0; k < whole + (width % block != 0); k++) {
            if (k >= k0 && k < k1)
                continue;
            const int part = k == whole; /* the last block: it overlaps, or is a tail */
            const ptrdiff_t x = part && !jb->accumulate ? width - block : k * block;
            const ptrdiff_t s = x - lead;
            if (!part && s >= 0 && s + reach + block <= frame) {
                fn(jb, tb, rows, s, outs, x, 1);
                continue;
            }
            for (int t = 0; t < nt; t++)
                edge_copy(jb, rows[t] == tb->crow ? NULL : rows[t], s, block + (int)reach,
                          tb->scratch + (size_t)t * tb->span);
            if (part && jb->accumulate)
                tail(fn, block, nr, jb, tb, srows, 0, outs, x, width - x);
            else
                fn(jb, tb, srows, 0, outs, x, 1);
        }
        for (int q = 0; jb->bytes != NULL && q < nr; q++) /* the rows just stored, in L1 */
            *jb->nans += finish_row(jb, outs[q], jb->bytes + (size_t)(r + q) * byte_row(jb),
                                    width);
        r += nr;
    }
}

/* Frames narrower than one block: one value at a time. */
static void scalar_rows(const Job *jb, const Tables *tb, int r0, int r1)
{
    const int c = jb->c;
    for (int r = r0; r < r1; r++)
        for (int x = 0; x < jb->wo; x++)
            for (int ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int i = 0; i < jb->kh; i++) {
                    const int sr = border_index(r + i * jb->dh - jb->top, jb->h, jb->border);
                    for (int j = 0; j < jb->kw; j++) {
                        const int sx = border_index(x + j * jb->dw - jb->left, jb->w, jb->border);
                        const float v = sr < 0 || sx < 0 ? jb->value
                                                         : sample(jb, ((size_t)sr * jb->w + sx) * c + ch);
                        acc += jb->w8[(ch * jb->kh + i) * jb->kw + j] * v;
                    }
                }
                float *dst = jb->out + ((size_t)r * jb->wo + x) * c + ch;
                acc += tb->btab[ch] + (jb->accumulate ? *dst : 0.0f);
                *dst = jb->relu && acc < 0 ? 0.0f : acc;
            }
    const size_t width = (size_t)jb->wo * c;
    for (int r = r0; jb->bytes != NULL && r < r1; r++)
        *jb->nans += finish_row(jb, jb->out + r * width, jb->bytes + r * byte_row(jb),
                                (ptrdiff_t)width);
}


/* What a call needs beside its rows: the lane weights (kernels per channel: a shared
 * kernel's blocks broadcast jb->w8 instead), the lane biases, the constant border's row
 * (constant border only), scratch rows for edge blocks and a buffer for a tail. */
static int make_tables(const Job *jb, const Isa *isa, Tables *tb)
{
    const int vw = isa->vw, block = XB * vw, taps = jb->kh * jb->kw;
    const int nmax = isa->r + jb->kh - 1 > jb->kh ? isa->r + jb->kh - 1 : jb->kh;
    const size_t frame = (size_t)jb->w * jb->c;
    memset(tb, 0, sizeof *tb);
    tb->span = block + (jb->kw - 1) * jb->dw * jb->c;
    tb->span = (tb->span + 15) & ~15;
    tb->wtab = malloc(sizeof(float) * ((jb->shared ? 0 : (size_t)taps * block) + block));
    tb->scratch = malloc(sizeof(float) * (size_t)nmax * tb->span);
    tb->crow = jb->border == B_CONSTANT ? malloc(sizeof(float) * frame) : NULL;
    tb->obuf = malloc(sizeof(float) * (size_t)isa->r * block);
    if (!tb->wtab || !tb->scratch || (jb->border == B_CONSTANT && !tb->crow) || !tb->obuf)
        return -1;
    if (jb->bytes != NULL && !jb->accumulate) {
        tb->orows = malloc(sizeof(float) * (size_t)isa->r * jb->wo * jb->c);
        if (tb->orows == NULL)
            return -1;
    }
    if (jb->kind != K_FLOAT || jb->mix != NULL) { /* the rows a window spans, either path */
        const int slots = (jb->kh - 1) * jb->dh + isa->r;
        tb->cache = malloc(sizeof(RowCache));
        if (tb->cache == NULL)
            return -1;
        tb->cache->slots = slots;
        tb->cache->rows = malloc(sizeof(float) * frame * slots);
        tb->cache->tags = malloc(sizeof(int) * slots);
        if (!tb->cache->rows || !tb->cache->tags)
            return -1;
        cache_columns(tb, 0, (ptrdiff_t)frame);
    }
    tb->btab = tb->wtab + (jb->shared ? 0 : (size_t)taps * block);
    for (int l = 0; l < block; l++) {
        const int ch = l % jb->c;
        for (int t = 0; t < taps && !jb->shared; t++)
            tb->wtab[(size_t)t * block + l] = jb->w8[ch * taps + t];
        tb->btab[l] = jb->bias ? jb->bias[ch] : 0.0f;
    }
    for (size_t f = 0; tb->crow != NULL && f < frame; f++)
        tb->crow[f] = jb->value;
    return 0;
}

static void free_tables(Tables *tb)
{
    free(tb->wtab);
    free(tb->scratch);
    free(tb->crow);
    free(tb->obuf);
    free(tb->orows);
    if (tb->cache != NULL) {
        free(tb->cache->rows);
        free(tb->cache->tags);
        free(tb->cache);
    }
}

/* The vertical pass's window of rows (R + kh - 1 of them) over one strip of columns is
 * kept under this many floats, so that as the window slides down by R rows the rows it
 * shares with the last position are read from L2, not memory: a 51-row window of a whole
 * 1080p row is 1.2 MB and did not stay (vertical pass 2.5x slower than in cache). */
enum { WINDOW_FLOATS = 1 << 17 };

/* Strips of output columns: bounds[s] .. bounds[s + 1], s < n; wide enough that a strip's
 * source columns hold the border's own (reflections reach at most a pad, at most the
 * kernel's reach) and a block. */
typedef struct {
    int n, widest;
    int bounds[65];
} Strips;

static void make_strips(const Job *jb, int bpx, int window_rows, Strips *st)
{
    const int reach = (jb->kw - 1) * jb->dw;
    int n = (int)(((long long)window_rows * (jb->wo + reach) * jb->c + WINDOW_FLOATS - 1) /
                  WINDOW_FLOATS);
    const int right = jb->w + reach - jb->left - jb->wo; /* the right pad */
    const int least = 2 * bpx + reach;
    /* a wrap reads the far edge (one strip holds both); pads past the kernel's reach
     * would leave an edge strip with fewer source columns than a block */
    if (jb->border == B_WRAP || jb->left > reach || right > reach || right < 0)
        n = 1;
    while (n > 1 && jb->wo / n - bpx < least)
        n--;
    n = n < 1 ? 1 : n > 64 ? 64 : n;
    st->n = n;
    st->widest = 0;
    for (int s = 0; s <= n; s++) {
        const int x = s == n ? jb->wo : (int)((long long)jb->wo * s / n / bpx * bpx);
        st->bounds[s] = x;
        if (s > 0 && x - st->bounds[s - 1] > st->widest)
            st->widest = x - st->bounds[s - 1];
    }
}

/* Separable, strip by strip of columns and R rows at a time: the vertical pass of ``col``
 * (a job of kh x 1 taps) over the strip's source columns into row buffers, their margins
 * past the frame's edges made from them (a column outside the frame sums the same rows),
 * then the horizontal pass of ``row`` (a job of 1 x kw taps) from the buffers into
 * ``out``. Both are the blocks above. */
static void run_separable(const Isa *isa, const Job *jv, const Tables *tv, const Job *jh,
                          const Tables *th, const Strips *st, float *tmp, size_t span,
                          const float *colsum, int r0, int r1)
{
    const int c = jv->c, block = XB * isa->vw, left = jh->left, w = jv->w, kh = jv->kh;
    const int reach = (jh->kw - 1) * jh->dw;
    const ptrdiff_t width = (ptrdiff_t)jh->wo * c;
    const float *rows[isa->r + kh];
    const float *hrows[isa->r];
    float *vouts[isa->r], *houts[isa->r];
    for (int s = 0; s < st->n; s++) {
        const int x0 = st->bounds[s], x1 = st->bounds[s + 1];
        /* buffer column 0 is padded column x0, source column x0 - left */
        const int a = x0 - left > 0 ? x0 - left : 0;
        const int b = x1 + reach - left < w ? x1 + reach - left : w;
        const ptrdiff_t va = (ptrdiff_t)a * c, vb = (ptrdiff_t)b * c;
        cache_columns(tv, va, vb); /* an integer source: only this strip's columns */
        for (int r = r0; r < r1;) {
            const int many = isa->r > 1 && jv->dh == 1 && r + isa->r <= r1;
            const int nr = many ? isa->r : 1, nt = many ? nr + kh - 1 : kh;
            const BlockFn fv = isa->rows[jv->shared][many ? 0 : 1];
            for (int t = 0; t < nt; t++)
                rows[t] = source_row(jv, tv, many ? r + t : r + t * jv->dh);
            for (int q = 0; q < nr; q++)
                vouts[q] = tmp + q * span + (size_t)(a - (x0 - left)) * c;
            sweep(fv, block, nr, jv, tv, rows, va, vouts, 0, vb - va);
            for (int q = 0; q < nr; q++) {
                float *buf = tmp + q * span;
                const int end = x1 + reach; /* padded columns of this buffer: x0 .. end */
                for (int e = 0; e < 2; e++) { /* the columns left of the frame, then right */
                    const int from = e ? (x0 > w + left ? x0 : w + left) : x0;
                    const int to = e ? end : (end < left ? end : left);
                    for (int p = from; p < to; p++) {
                        float *dst = buf + (size_t)(p - x0) * c;
                        const int xs = border_index(p - left, w, jv->border);
                        if (xs < 0)
                            for (int ch = 0; ch < c; ch++)
                                dst[ch] = jv->value * colsum[ch];
                        else
                            memcpy(dst, buf + (size_t)(xs + left - x0) * c, sizeof(float) * c);
                    }
                }
            }
            for (int q = 0; q < nr; q++) {
                hrows[q] = tmp + q * span;
                houts[q] = th->orows ? th->orows + (size_t)q * width
                                     : jh->out + (size_t)(r + q) * width;
            }
            sweep(isa->rows[jh->shared][many ? 0 : 1], block, nr, jh, th, hrows, 0, houts,
                  (ptrdiff_t)x0 * c, (ptrdiff_t)(x1 - x0) * c);
            for (int q = 0; jh->bytes != NULL && q < nr; q++) /* this strip's part, in L1 */
                *jh->nans += finish_row(jh, houts[q] + (size_t)x0 * c,
                                        jh->bytes + (size_t)(r + q) * byte_row(jh) +
                                            (size_t)x0 * (jh->reduce ? 1 : c),
                                        (ptrdiff_t)(x1 - x0) * c);
            r += nr;
        }
    }
}

/* The checks both entry points make; a ValueError is set where one fails. */
static int bad_job(const Job *jb, const Isa *isa, int r0, int r1)
{
    if (jb->h < 1 || jb->w < 1 || jb->c < 1 || jb->ho < 1 || jb->wo < 1 || jb->kh < 1 ||
        jb->kw < 1 || jb->dh < 1 || jb->dw < 1 || jb->border < B_CONSTANT ||
        jb->border > B_WRAP || r0 < 0 || r1 > jb->ho || r0 > r1 ||
        (XB * isa->vw) % jb->c != 0) {
        PyErr_SetString(PyExc_ValueError, "inconsistent depthwise shape");
        return 1;
    }
    if (jb->reduce != R_NONE && (jb->reduce != R_L2 || jb->c != 2 || jb->bytes == NULL)) {
        PyErr_SetString(PyExc_ValueError, "reduce 1 (l2) takes 2 channels, into bytes");
        return 1;
    }
    return 0;
}

/* A source of ``kind`` (float32, uint8, uint16) holding the frame; else a ValueError. */
static int bad_source(const Job *jb, const Py_buffer *src)
{
    static const int item[] = {sizeof(float), sizeof(uint8_t), sizeof(uint16_t)};
    if (jb->kind < K_FLOAT || jb->kind > K_U16) {
        PyErr_SetString(PyExc_ValueError, "source kind must be 0 (float32), 1 (uint8) or 2 (uint16)");
        return 1;
    }
    const long long need = (long long)jb->h * jb->w * jb->sc * item[jb->kind];
    if (src->len < need) {
        PyErr_Format(PyExc_ValueError, "src holds %zd bytes, needs %lld", src->len, need);
        return 1;
    }
    return 0;
}

/* The optional byte output: None, or a writable buffer of (ho, wo, C) bytes that each
 * finished row is also written to (the NaNs met counted into *nans). Sets *bad (a Python
 * error set) where it is not; release ``view`` when ``view->obj``. */
static void optional_bytes(PyObject *obj, Py_buffer *view, Job *jb, long long *nans,
                           int *bad)
{
    if (*bad || obj == Py_None)
        return;
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0) {
        *bad = 1;
        return;
    }
    if (view->len < (Py_ssize_t)(jb->ho * byte_row(jb))) {
        PyErr_Format(PyExc_ValueError, "bytes holds %zd bytes, needs %lld", view->len,
                     (long long)(jb->ho * byte_row(jb)));
        *bad = 1;
        return;
    }
    jb->bytes = view->buf;
    jb->nans = nans;
}

/* The optional mix: None (sc = c), or float32 (c, sc) weights (Job.mix). Sets *bad (a
 * Python error set) where it is not; release ``view`` when ``view->obj``. */
static void optional_mix(PyObject *obj, Py_buffer *view, Job *jb, int *bad)
{
    jb->sc = jb->c;
    if (*bad || obj == Py_None)
        return;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        *bad = 1;
        return;
    }
    const Py_ssize_t floats = view->len / (Py_ssize_t)sizeof(float);
    if (jb->c < 1 || floats < jb->c || floats % jb->c || view->len % sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "mix holds %zd bytes; expected (c, sc) float32", view->len);
        *bad = 1;
        return;
    }
    jb->mix = view->buf;
    jb->sc = (int)(floats / jb->c);
}

/* None, or the NaN count where the rows were also written as bytes. */
static PyObject *result(PyObject *done, const Job *jb)
{
    if (done == NULL || jb->bytes == NULL)
        return done;
    Py_DECREF(done);
    return PyLong_FromLongLong(*jb->nans);
}

#define JOB_FORMAT "(iiiiiiiiiii)ifpii|zOppiOpOi"
#define JOB_FIELDS(jb)                                                                         \
    &(jb).h, &(jb).w, &(jb).c, &(jb).ho, &(jb).wo, &(jb).kh, &(jb).kw, &(jb).dh, &(jb).dw,   \
        &(jb).top, &(jb).left, &(jb).border, &(jb).value, &(jb).shared

static PyObject *correlate(PyObject *self, PyObject *args)
{
    Py_buffer src, w, out, bias = {0}, bytes = {0}, mix = {0};
    Job jb = {0};
    int r0, r1;
    long long nans = 0;
    const char *name = NULL;
    PyObject *bias_obj = Py_None, *bytes_obj = Py_None, *mix_obj = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*" JOB_FORMAT, &src, &w, &out, JOB_FIELDS(jb), &r0, &r1,
                          &name, &bias_obj, &jb.relu, &jb.accumulate, &jb.kind, &bytes_obj,
                          &jb.absolute, &mix_obj, &jb.reduce))
        return NULL;
    const int variant = isa_or_error(name);
    const Isa *isa = variant < 0 ? NULL : isa_blocks(variant);
    int bad = isa == NULL;
    jb.bias = optional_floats(bias_obj, &bias, &bad);
    optional_bytes(bytes_obj, &bytes, &jb, &nans, &bad);
    optional_mix(mix_obj, &mix, &jb, &bad);
    bad = bad || bad_job(&jb, isa, r0, r1) ||
          bad_source(&jb, &src) ||
          too_small(&w, (long long)jb.c * jb.kh * jb.kw, "weights") ||
          too_small(&out, (long long)jb.ho * jb.wo * jb.c, "out") ||
          (jb.bias != NULL && too_small(&bias, jb.c, "bias"));
    if (!bad) {
        Tables tb;
        jb.src = src.buf;
        jb.raw = src.buf;
        jb.w8 = w.buf;
        jb.out = out.buf;
        if (make_tables(&jb, isa, &tb) < 0) {
            PyErr_NoMemory();
            bad = 1;
        } else {
            Py_BEGIN_ALLOW_THREADS
            if ((ptrdiff_t)jb.wo * jb.c < XB * isa->vw)
                scalar_rows(&jb, &tb, r0, r1);
            else
                run_rows(isa, &jb, &tb, r0, r1);
            Py_END_ALLOW_THREADS
        }
        free_tables(&tb);
    }
    return result(finish(bad, (Py_buffer *const[]){&src, &w, &out, &bias, &bytes, &mix}, 6),
                  &jb);
}

static PyObject *separable(PyObject *self, PyObject *args)
{
    Py_buffer src, col, row, out, bias = {0}, bytes = {0}, mix = {0};
    Job jb = {0};
    int r0, r1;
    long long nans = 0;
    const char *name = NULL;
    PyObject *bias_obj = Py_None, *bytes_obj = Py_None, *mix_obj = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*w*" JOB_FORMAT, &src, &col, &row, &out, JOB_FIELDS(jb),
                          &r0, &r1, &name, &bias_obj, &jb.relu, &jb.accumulate, &jb.kind,
                          &bytes_obj, &jb.absolute, &mix_obj, &jb.reduce))
        return NULL;
    const int variant = isa_or_error(name);
    const Isa *isa = variant < 0 ? NULL : isa_blocks(variant);
    int bad = isa == NULL;
    jb.bias = optional_floats(bias_obj, &bias, &bad);
    optional_bytes(bytes_obj, &bytes, &jb, &nans, &bad);
    optional_mix(mix_obj, &mix, &jb, &bad);
    bad = bad || bad_job(&jb, isa, r0, r1);
    if (!bad && ((ptrdiff_t)jb.w * jb.c < XB * isa->vw || (ptrdiff_t)jb.wo * jb.c < XB * isa->vw)) {
        PyErr_SetString(PyExc_ValueError, "frame narrower than one block");
        bad = 1;
    }
    bad = bad || bad_source(&jb, &src) ||
          too_small(&col, (long long)jb.c * jb.kh, "col") ||
          too_small(&row, (long long)jb.c * jb.kw, "row") ||
          too_small(&out, (long long)jb.ho * jb.wo * jb.c, "out") ||
          (jb.bias != NULL && too_small(&bias, jb.c, "bias"));
    if (!bad) {
        Job jv = jb, jh = jb; /* vertical: kh x 1 over the frame's width; horizontal: 1 x kw */
        Tables tv, th;
        jv.src = src.buf;
        jv.raw = src.buf;
        jv.w8 = col.buf;
        jv.kw = jv.dw = 1;
        jv.wo = jb.w;
        jv.left = 0;
        jv.bias = NULL;
        jv.relu = jv.accumulate = 0;
        jv.bytes = NULL; /* only the horizontal pass finishes values */
        jv.reduce = R_NONE;
        jh.kind = K_FLOAT; /* it reads the vertical pass's float rows */
        jh.mix = NULL;
        jh.sc = jh.c;
        jh.w8 = row.buf;
        jh.out = out.buf;
        jh.kh = jh.dh = 1;
        Strips st;
        const int window = jb.dh == 1 ? isa->r + jb.kh - 1 : (jb.kh - 1) * jb.dh + 1;
        make_strips(&jb, XB * isa->vw / jb.c, window, &st);
        /* a buffer row, and a block past it (read by a tail: sweep) */
        const size_t span = ((size_t)(st.widest + (jb.kw - 1) * jb.dw) * jb.c + XB * isa->vw +
                             15) & ~(size_t)15;
        float *tmp = malloc(sizeof(float) * (span * isa->r + jb.c));
        float *colsum = tmp ? tmp + span * isa->r : NULL;
        const int tv_bad = make_tables(&jv, isa, &tv), th_bad = make_tables(&jh, isa, &th);
        if (tmp == NULL || tv_bad || th_bad) {
            PyErr_NoMemory();
            bad = 1;
        } else {
            for (int ch = 0; ch < jb.c; ch++) {
                colsum[ch] = 0.0f;
                for (int i = 0; i < jb.kh; i++)
                    colsum[ch] += ((const float *)col.buf)[ch * jb.kh + i];
            }
            Py_BEGIN_ALLOW_THREADS
            run_separable(isa, &jv, &tv, &jh, &th, &st, tmp, span, colsum, r0, r1);
            Py_END_ALLOW_THREADS
        }
        free(tmp);
        free_tables(&tv);
        free_tables(&th);
    }
    return result(finish(bad, (Py_buffer *const[]){&src, &col, &row, &out, &bias, &bytes, &mix},
                         7),
                  &jb);
}

enum { RUN = 1024, RUN_CHANNELS = 4 }; /* a planar run converted at once: floats, planes */

static PyObject *to_bytes(PyObject *self, PyObject *args)
{
    PyObject *src_obj;
    Py_buffer src, dst;
    int absolute;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ow*p", &src_obj, &dst, &absolute))
        return NULL;
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&dst);
        return NULL;
    }
    int bad = src.ndim != 3 || src.itemsize != sizeof(float) || src.format == NULL ||
              strcmp(src.format, "f") != 0;
    ptrdiff_t rows = 0, w = 0, c = 0, s0 = 0, s1 = 0, s2 = 0;
    if (!bad) {
        rows = src.shape[0], w = src.shape[1], c = src.shape[2];
        s0 = src.strides[0], s1 = src.strides[1], s2 = src.strides[2];
        bad = s0 % 4 || s1 % 4 || s2 % 4;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "src must be a 3-D float32 array");
    } else if (dst.len < rows * w * c) {
        PyErr_Format(PyExc_ValueError, "dst holds %zd bytes, needs %zd", dst.len, rows * w * c);
        bad = 1;
    }
    long long nans = 0;
    if (!bad) {
        s0 /= 4, s1 /= 4, s2 /= 4;
        const float *base = src.buf;
        uint8_t *out = dst.buf;
        Py_BEGIN_ALLOW_THREADS
        for (ptrdiff_t r = 0; r < rows; r++) {
            uint8_t *d = out + r * w * c;
            float in[RUN];
            uint8_t tmp[RUN_CHANNELS][RUN];
            if (s2 == 1 && s1 == c) { /* interleaved rows: one run */
                nans += bytes_from(base + r * s0, d, w * c, absolute);
                continue;
            }
            for (ptrdiff_t x0 = 0; x0 < w; x0 += RUN) { /* a run of every channel, then */
                const ptrdiff_t n = w - x0 < RUN ? w - x0 : RUN; /* written interleaved */
                for (ptrdiff_t c0 = 0; c0 < c; c0 += RUN_CHANNELS) {
                    const ptrdiff_t nc = c - c0 < RUN_CHANNELS ? c - c0 : RUN_CHANNELS;
                    for (ptrdiff_t k = 0; k < nc; k++) {
                        const float *from = base + r * s0 + (c0 + k) * s2 + x0 * s1;
                        if (s1 != 1) /* a planar result's rows are runs already */
                            for (ptrdiff_t x = 0; x < n; x++)
                                in[x] = from[x * s1];
                        nans += bytes_from(s1 == 1 ? from : in, tmp[k], n, absolute);
                    }
                    uint8_t *at = d + x0 * c + c0;
                    if (nc == 3) /* colour: one pass of three-byte stores (vectorised) */
                        for (ptrdiff_t x = 0; x < n; x++) {
                            at[3 * x] = tmp[0][x];
                            at[3 * x + 1] = tmp[1][x];
                            at[3 * x + 2] = tmp[2][x];
                        }
                    else
                        for (ptrdiff_t k = 0; k < nc; k++)
                            for (ptrdiff_t x = 0; x < n; x++)
                                at[x * c + k] = tmp[k][x];
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return bad ? NULL : PyLong_FromLongLong(nans);
}

static PyObject *block(PyObject *self, PyObject *args)
{
    const char *name = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "|z", &name))
        return NULL;
    const int variant = isa_or_error(name);
    if (variant < 0)
        return NULL;
    const Isa *isa = isa_blocks(variant);
    return Py_BuildValue("(ii)", XB * isa->vw, isa->r);
}

static PyMethodDef methods[] = {
    {"correlate", correlate, METH_VARARGS,
     "correlate(src, weights, out, (h, w, c, ho, wo, kh, kw, dh, dw, top, left), border, "
     "value, shared, r0, r1[, isa[, bias[, relu[, accumulate[, kind[, bytes[, absolute[, mix[, "
     "reduce]]]]]]]]]) -> None, or the NaN count with bytes; kind of src: 0 float32, 1 uint8, "
     "2 uint16; bytes: (ho, wo, C) uint8 each finished row is also written to, as the "
     "saturate (abs) policy over [0, 255] writes it ((ho, wo) with reduce 1: the magnitude of "
     "the two channels); mix: float32 (c, sc), src pixels of sc values mixed into c lanes"},
    {"separable", separable, METH_VARARGS,
     "separable(src, col, row, out, (h, w, c, ho, wo, kh, kw, dh, dw, top, left), border, "
     "value, shared, r0, r1[, isa[, bias[, relu[, accumulate[, kind[, bytes[, absolute[, mix[, "
     "reduce]]]]]]]]]) -> as correlate"},
    {"to_bytes", to_bytes, METH_VARARGS,
     "to_bytes(src, dst, absolute) -> NaN count: float32 (rows, W, C), any strides, into "
     "uint8 dst (rows, W, C) as the saturate (or abs) policy over [0, 255] writes them"},
    {"block", block, METH_VARARGS,
     "block([isa]) -> (floats, rows): a block's floats (C must divide them) and the rows "
     "summed at once"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depthwise",
                                    "Depthwise correlation of interleaved frames (engine/direct.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__depthwise(void) { return PyModule_Create(&module); }
