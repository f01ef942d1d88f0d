/* The FFT method's multiply-accumulate of spectra over input channels, fused.
 *
 * acc[o, t, j] = sum over c < cg of  s[(o / og) * cg + c, t, j] * k[o, c, j]
 *
 * s: (C_in, n, B) complex64 spectra of n tiles (n = 1 full-frame), B bins each;
 * k: (C_out, cg, B) complex64 kernel spectra, the same for every tile;
 * acc: (C_out, n, B) complex64; bins j0 <= j < j1 of every tile are computed.
 *
 * Why it exists: numpy needs a pass per product and another per sum (acc = s0·k0;
 * tmp = s1·k1; acc += tmp …), so the accumulator and a temporary go through the cache
 * 2·cg times. Here each vector of bins is summed in registers and stored once. Where the
 * kernel spectra come from DRAM (full-frame, 97 MB at 720p for 3 -> 8) reading them sets
 * the pace either way; where they stay in cache (tiles) this is ~3x numpy.
 *
 * Complex numbers are interleaved (re, im) floats. With s = a + bi, k = c + di, two
 * vectors sum s·k = (a·c, b·d) and swap(s)·k = (b·c, a·d) over the input channels; their
 * pairs are combined into (a·c - b·d, a·d + b·c) once per store.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_shared.h"

typedef struct {
    const float *s, *k;
    float *acc;
    long long n, bins;
    int cin, cout, cg, og;
} Mac;

/* The sum over cg input channels for one vector of VW floats (VW / 2 bins):
 * out = sum_c s_c · k_c, s_c at src + c·splane and k_c at k + c·kplane. ``mirrored``: s_c
 * is read backwards and conjugated (REV reverses the bins of a vector, CONJ negates the
 * imaginary lanes), the paired loop's other half of a spectrum. With s = a + bi and
 * k = c + di, p sums (a·c, b·d) and q sums (b·c, a·d); SWAP swaps re and im, EVEN takes
 * even lanes from the first vector and odd lanes from the second (constant masks: the
 * compiler makes single permutes of them). */
#define VEC(NAME, ATTR, VW, SWAP, EVEN, REV, CONJ)                                        \
    typedef float NAME##_v ISA_VECTOR(VW);                                                \
    typedef int NAME##_i __attribute__((vector_size((VW) * 4)));                          \
    ATTR static inline void NAME(int cg, const float *src, long long splane,              \
                                 const float *k, long long kplane, float *out, int mirrored) \
    {                                                                                     \
        const NAME##_v conj = CONJ;                                                       \
        NAME##_v p = {0}, q = {0};                                                        \
        for (int c = 0; c < cg; c++) {                                                    \
            NAME##_v s = *(const NAME##_v *)(src + c * splane);                           \
            if (mirrored)                                                                 \
                s = __builtin_shuffle(s, (NAME##_i)REV) * conj;                           \
            const NAME##_v kc = *(const NAME##_v *)(k + c * kplane);                      \
            p += s * kc;                                                                  \
            q += __builtin_shuffle(s, (NAME##_i)SWAP) * kc;                               \
        }                                                                                 \
        /* re = a·c - b·d, im = a·d + b·c */                                              \
        const NAME##_v re = p - __builtin_shuffle(p, (NAME##_i)SWAP);                     \
        const NAME##_v im = q + __builtin_shuffle(q, (NAME##_i)SWAP);                     \
        *(NAME##_v *)out = __builtin_shuffle(re, im, (NAME##_i)EVEN);                     \
    }

/* One bin, as VEC: s (conjugated when sign is -1) times k, summed over cg channels. */
static inline void one_bin(int cg, const float *s, long long splane, const float *k,
                           long long kplane, float *out, float sign)
{
    float re = 0.0f, im = 0.0f;
    for (int c = 0; c < cg; c++) {
        const float a = s[c * splane], b = sign * s[c * splane + 1];
        const float kc = k[c * kplane], kd = k[c * kplane + 1];
        re += a * kc - b * kd;
        im += a * kd + b * kc;
    }
    out[0] = re;
    out[1] = im;
}

#define SWAP4 {1, 0, 3, 2}
#define EVEN4 {0, 5, 2, 7}
#define REV4 {2, 3, 0, 1}
#define CONJ4 {1.0f, -1.0f, 1.0f, -1.0f}
#define SWAP8 {1, 0, 3, 2, 5, 4, 7, 6}
#define EVEN8 {0, 9, 2, 11, 4, 13, 6, 15}
#define REV8 {6, 7, 4, 5, 2, 3, 0, 1}
#define CONJ8 {1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f}
#define SWAP16 {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}
#define EVEN16 {0, 17, 2, 19, 4, 21, 6, 23, 8, 25, 10, 27, 12, 29, 14, 31}
#define REV16 {14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1}
#define CONJ16 {1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, \
                1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f}

VEC(vec_generic, , 4, SWAP4, EVEN4, REV4, CONJ4)
#ifdef ISA_X86
VEC(vec_avx2, ISA_AVX2_ATTR, 8, SWAP8, EVEN8, REV8, CONJ8)
VEC(vec_avx512, ISA_AVX512_ATTR, 16, SWAP16, EVEN16, REV16, CONJ16)
#endif

/* Bins [j0, j1) of tile t, output o: vectors of VW floats (VW / 2 bins), then a tail. */
#define MAC(NAME, ATTR, VW, VECTOR)                                                       \
    ATTR static void NAME(const Mac *m, long long t, int o, long long j0, long long j1)   \
    {                                                                                     \
        const long long plane = m->n * m->bins * 2, kplane = m->bins * 2;                 \
        const float *s0 = m->s + (size_t)((o / m->og) * m->cg) * plane + t * m->bins * 2; \
        const float *k0 = m->k + (size_t)o * m->cg * kplane;                              \
        float *out = m->acc + (size_t)o * plane + t * m->bins * 2;                        \
        long long f = j0 * 2;                                                             \
        for (; f + (VW) <= j1 * 2; f += (VW))                                             \
            VECTOR(m->cg, s0 + f, plane, k0 + f, kplane, out + f, 0);                     \
        for (; f < j1 * 2; f += 2)                                                        \
            one_bin(m->cg, s0 + f, plane, k0 + f, kplane, out + f, 1.0f);                 \
    }

typedef void (*MacFn)(const Mac *, long long, int, long long, long long);

MAC(mac_generic, , 4, vec_generic)
#ifdef ISA_X86
MAC(mac_avx2, ISA_AVX2_ATTR, 8, vec_avx2)
MAC(mac_avx512, ISA_AVX512_ATTR, 16, vec_avx512)
#endif

/* Blocks of BLOCK bins; in each, every tile and every output: a block of the kernel
 * spectra (cg·C_out·8 KB) is read from memory once and then from the cache for the
 * other tiles, and a block of the spectra is read from the cache for every output. */
enum { BLOCK = 1024 };

static void run(MacFn fn, const Mac *m, long long j0, long long j1)
{
    for (long long a = j0; a < j1; a += BLOCK) {
        const long long b = a + BLOCK < j1 ? a + BLOCK : j1;
        for (long long t = 0; t < m->n; t++)
            for (int o = 0; o < m->cout; o++)
                fn(m, t, o, a, b);
    }
}

static PyObject *accumulate(PyObject *self, PyObject *args)
{
    Py_buffer s, k, acc;
    Mac m;
    long long j0, j1;
    const char *name = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*(iiiiLL)LL|z", &s, &k, &acc, &m.cin, &m.cout, &m.cg,
                          &m.og, &m.n, &m.bins, &j0, &j1, &name))
        return NULL;
    const int isa = isa_or_error(name);
    int bad = isa < 0;
    if (!bad && (m.cin < 1 || m.cout < 1 || m.cg < 1 || m.og < 1 || m.n < 1 || m.bins < 1 ||
                 m.cin % m.cg || m.cout % m.og || m.cin / m.cg != m.cout / m.og || j0 < 0 ||
                 j1 > m.bins || j0 > j1)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent multiply-accumulate shape");
        bad = 1;
    }
    bad = bad || too_small(&s, 2LL * m.cin * m.n * m.bins, "spectra") ||
          too_small(&k, 2LL * m.cout * m.cg * m.bins, "kernel spectra") ||
          too_small(&acc, 2LL * m.cout * m.n * m.bins, "acc");
    if (!bad) {
        m.s = s.buf;
        m.k = k.buf;
        m.acc = acc.buf;
        const MacFn fn = ISA_PICK(isa, mac_generic, mac_avx2, mac_avx512);
        Py_BEGIN_ALLOW_THREADS
        run(fn, &m, j0, j1);
        Py_END_ALLOW_THREADS
    }
    return finish(bad, (Py_buffer *const[]){&s, &k, &acc}, 3);
}

/* ---- Paired outputs (tiles): two real outputs are the real and imaginary parts of one
 * complex inverse transform, which FFTW does in ~0.7x the time of two real ones here.
 *
 * acc[j, t, r, c] = sum over c' < cg of S[(j / og) * cg + c', t](r, c) * k[j, c', r, c]
 * over the full th x tw grid (c < tw, even tw) of rows r0 <= r < r1, where k[j] holds
 * the spectra of outputs 2j + i·(2j+1). S, the full spectrum of a real tile, is read
 * from its half (th x h bins, h = tw/2 + 1, FFTW's r2c output): S(r, c) = s[r, c] for
 * c < h and conj(s[(th - r) % th, tw - c]) past it, so no mirrored copy is written.
 */
typedef struct {
    const float *s, *k;
    float *acc;
    long long n;
    int cin, pairs, cg, og, th, tw;
} Pairs;

/* One output row: cols [0, h) read s's row r as it is; cols [h, tw) read row (th - r) %
 * th backwards, conjugated. Each part ends with a vector that overlaps the one before
 * rather than a scalar tail (it writes the same values again): the parts are 65-257
 * bins, and scalar tails took a fifth of the time. A vector at output float f of the
 * mirrored part reads source bins tw - f/2 down to tw - f/2 - VW/2 + 1. */
#define PAIRS(NAME, ATTR, VW, VECTOR)                                                     \
    ATTR static void NAME(const Pairs *m, long long t, int j, int r)                      \
    {                                                                                     \
        const long long h = m->tw / 2 + 1, tw = m->tw;                                    \
        const long long splane = m->n * m->th * h * 2, kplane = (long long)m->th * tw * 2; \
        const float *s0 = m->s + (size_t)((j / m->og) * m->cg) * splane + t * m->th * h * 2; \
        const float *row = s0 + (long long)r * h * 2;                                     \
        const float *mirror = s0 + (long long)((m->th - r) % m->th) * h * 2;              \
        const float *k0 = m->k + (size_t)j * m->cg * kplane + (long long)r * tw * 2;      \
        float *out = m->acc + (size_t)j * m->n * kplane + (t * m->th + r) * tw * 2;       \
        long long f = 0;                                                                  \
        for (; f < 2 * h && 2 * h >= (VW); f += (VW)) {                                   \
            f = f + (VW) <= 2 * h ? f : 2 * h - (VW); /* the last overlaps */             \
            VECTOR(m->cg, row + f, splane, k0 + f, kplane, out + f, 0);                   \
        }                                                                                 \
        for (; f < 2 * h; f += 2)                                                         \
            one_bin(m->cg, row + f, splane, k0 + f, kplane, out + f, 1.0f);               \
        for (; f < 2 * tw && 2 * (tw - h) >= (VW); f += (VW)) {                           \
            f = f + (VW) <= 2 * tw ? f : 2 * tw - (VW); /* the last overlaps */           \
            VECTOR(m->cg, mirror + 2 * (tw - f / 2 - (VW) / 2 + 1), splane, k0 + f, kplane, \
                   out + f, 1);                                                           \
        }                                                                                 \
        for (; f < 2 * tw; f += 2)                                                        \
            one_bin(m->cg, mirror + 2 * (tw - f / 2), splane, k0 + f, kplane, out + f,    \
                    -1.0f);                                                               \
    }

typedef void (*PairsFn)(const Pairs *, long long, int, int);

PAIRS(pairs_generic, , 4, vec_generic)
#ifdef ISA_X86
PAIRS(pairs_avx2, ISA_AVX2_ATTR, 8, vec_avx2)
PAIRS(pairs_avx512, ISA_AVX512_ATTR, 16, vec_avx512)
#endif

/* ---- The valid part of paired output tiles into planes: dst[2j] gets the real parts
 * and dst[2j + 1] (when there is one) the imaginary parts of src[j]. src: (pairs, n, th,
 * tw) complex64; dst: (cout, height, width) float32. Tile t's rows [0, rows) and cols
 * [0, sw) go to rows y0.. and cols x0 + t·sw.., cut at dst's edge. */
typedef struct {
    const float *src;
    float *dst;
    long long n, height, width, y0, x0;
    int pairs, cout, th, tw, rows, sw;
    const float *bias; /* NULL: none; else added to each output channel as it is stored */
    int relu;          /* then max(., 0) as it is stored (NaN stays NaN, as in torch) */
} Split;

#define SPLIT(NAME, ATTR, VW, EVENS, ODDS)                                                \
    typedef float NAME##_v ISA_VECTOR(VW);                                                \
    typedef int NAME##_i __attribute__((vector_size((VW) * 4)));                          \
    ATTR static void NAME(const Split *m, int j, long long t, int r)                      \
    {                                                                                     \
        const long long x = m->x0 + t * m->sw;                                            \
        const long long cols = m->sw < m->width - x ? m->sw : m->width - x;               \
        const float *src = m->src + ((j * m->n + t) * m->th + r) * (long long)m->tw * 2;  \
        float *re = m->dst + ((2LL * j) * m->height + m->y0 + r) * m->width + x;          \
        float *im = 2 * j + 1 < m->cout ? re + m->height * m->width : NULL;               \
        const float bre = m->bias ? m->bias[2 * j] : 0.0f;                                \
        const float bim = m->bias && im ? m->bias[2 * j + 1] : 0.0f;                      \
        long long c = 0;                                                                  \
        for (; im && c < cols && cols >= (VW); c += (VW)) {                               \
            c = c + (VW) <= cols ? c : cols - (VW); /* the last overlaps: same values */  \
            const NAME##_v a = *(const NAME##_v *)(src + 2 * c);                          \
            const NAME##_v b = *(const NAME##_v *)(src + 2 * c + (VW));                   \
            NAME##_v vr = __builtin_shuffle(a, b, (NAME##_i)EVENS) + bre;                 \
            NAME##_v vi = __builtin_shuffle(a, b, (NAME##_i)ODDS) + bim;                  \
            if (m->relu) {                                                                \
                vr = ISA_RELU(vr, NAME##_v, NAME##_i);                                    \
                vi = ISA_RELU(vi, NAME##_v, NAME##_i);                                    \
            }                                                                             \
            *(NAME##_v *)(re + c) = vr;                                                   \
            *(NAME##_v *)(im + c) = vi;                                                   \
        }                                                                                 \
        for (; c < cols; c++) {                                                           \
            const float vr = src[2 * c] + bre;                                            \
            re[c] = m->relu && vr < 0 ? 0.0f : vr;                                        \
            if (im) {                                                                     \
                const float vi = src[2 * c + 1] + bim;                                    \
                im[c] = m->relu && vi < 0 ? 0.0f : vi;                                    \
            }                                                                             \
        }                                                                                 \
    }

#define EVENS4 {0, 2, 4, 6}
#define ODDS4 {1, 3, 5, 7}
#define EVENS8 {0, 2, 4, 6, 8, 10, 12, 14}
#define ODDS8 {1, 3, 5, 7, 9, 11, 13, 15}
#define EVENS16 {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#define ODDS16 {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}

typedef void (*SplitFn)(const Split *, int, long long, int);

SPLIT(split_generic, , 4, EVENS4, ODDS4)
#ifdef ISA_X86
SPLIT(split_avx2, ISA_AVX2_ATTR, 8, EVENS8, ODDS8)
SPLIT(split_avx512, ISA_AVX512_ATTR, 16, EVENS16, ODDS16)
#endif

static PyObject *accumulate_pairs(PyObject *self, PyObject *args)
{
    Py_buffer s, k, acc;
    Pairs m;
    int r0, r1;
    const char *name = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*(iiiiLii)ii|z", &s, &k, &acc, &m.cin, &m.pairs, &m.cg,
                          &m.og, &m.n, &m.th, &m.tw, &r0, &r1, &name))
        return NULL;
    const int isa = isa_or_error(name);
    int bad = isa < 0;
    if (!bad && (m.cin < 1 || m.pairs < 1 || m.cg < 1 || m.og < 1 || m.n < 1 || m.th < 1 ||
                 m.tw < 2 || m.tw % 2 || m.cin % m.cg || m.pairs % m.og ||
                 m.cin / m.cg != m.pairs / m.og || r0 < 0 || r1 > m.th || r0 > r1)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent paired multiply-accumulate shape");
        bad = 1;
    }
    const long long half = (long long)m.th * (m.tw / 2 + 1), full = (long long)m.th * m.tw;
    bad = bad || too_small(&s, 2LL * m.cin * m.n * half, "spectra") ||
          too_small(&k, 2LL * m.pairs * m.cg * full, "kernel spectra") ||
          too_small(&acc, 2LL * m.pairs * m.n * full, "acc");
    if (!bad) {
        m.s = s.buf;
        m.k = k.buf;
        m.acc = acc.buf;
        const PairsFn fn = ISA_PICK(isa, pairs_generic, pairs_avx2, pairs_avx512);
        Py_BEGIN_ALLOW_THREADS
        for (long long t = 0; t < m.n; t++)
            for (int r = r0; r < r1; r++)
                for (int j = 0; j < m.pairs; j++)
                    fn(&m, t, j, r);
        Py_END_ALLOW_THREADS
    }
    return finish(bad, (Py_buffer *const[]){&s, &k, &acc}, 3);
}

static PyObject *split_pairs(PyObject *self, PyObject *args)
{
    Py_buffer src, dst, bias = {0};
    Split m;
    const char *name = NULL;
    PyObject *bias_obj = Py_None;
    (void)self;
    m.relu = 0;
    if (!PyArg_ParseTuple(args, "y*w*(iiLii)(LL)LLii|zOp", &src, &dst, &m.pairs, &m.cout,
                          &m.n, &m.th, &m.tw, &m.height, &m.width, &m.y0, &m.x0, &m.rows,
                          &m.sw, &name, &bias_obj, &m.relu))
        return NULL;
    const int isa = isa_or_error(name);
    int bad = isa < 0;
    m.bias = optional_floats(bias_obj, &bias, &bad);
    if (!bad && (m.pairs < 1 || (m.cout != 2 * m.pairs && m.cout != 2 * m.pairs - 1) ||
                 m.n < 1 || m.th < 1 || m.tw < 1 || m.rows < 0 || m.rows > m.th || m.sw < 0 ||
                 m.sw > m.tw || m.height < 0 || m.width < 0 || m.y0 < 0 || m.x0 < 0 ||
                 m.y0 + m.rows > m.height || m.x0 > m.width)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent paired scatter shape");
        bad = 1;
    }
    bad = bad || too_small(&src, 2LL * m.pairs * m.n * m.th * m.tw, "tiles") ||
          too_small(&dst, (long long)m.cout * m.height * m.width, "planes") ||
          (m.bias != NULL && too_small(&bias, m.cout, "bias"));
    if (!bad) {
        m.src = src.buf;
        m.dst = dst.buf;
        const SplitFn fn = ISA_PICK(isa, split_generic, split_avx2, split_avx512);
        Py_BEGIN_ALLOW_THREADS
        for (int j = 0; j < m.pairs; j++)
            for (long long t = 0; t < m.n && m.x0 + t * m.sw < m.width; t++)
                for (int r = 0; r < m.rows; r++)
                    fn(&m, j, t, r);
        Py_END_ALLOW_THREADS
    }
    return finish(bad, (Py_buffer *const[]){&src, &dst, &bias}, 3);
}

static PyMethodDef methods[] = {
    {"accumulate", accumulate, METH_VARARGS,
     "accumulate(spectra, kernels, acc, (cin, cout, cg, og, n, bins), j0, j1[, isa])"},
    {"accumulate_pairs", accumulate_pairs, METH_VARARGS,
     "accumulate_pairs(spectra, kernels, acc, (cin, pairs, cg, og, n, th, tw), r0, r1[, isa])"},
    {"split_pairs", split_pairs, METH_VARARGS,
     "split_pairs(tiles, planes, (pairs, cout, n, th, tw), (height, width), y0, x0, rows, sw"
     "[, isa[, bias[, relu]]])"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_spectral",
                                    "Fused multiply-accumulate of spectra (engine/fft.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spectral(void) { return PyModule_Create(&module); }
