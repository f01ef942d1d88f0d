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

/* Bins [j0, j1) of tile t, output o, in vectors of VW floats (VW / 2 bins), then a tail.
 * SWAP swaps re and im, EVEN takes even lanes from the first vector and odd lanes from
 * the second (constant masks: the compiler makes single permutes of them). */
#define MAC(NAME, ATTR, VW, SWAP, EVEN)                                                   \
    typedef float NAME##_v ISA_VECTOR(VW);                                                \
    typedef int NAME##_i __attribute__((vector_size((VW) * 4)));                          \
    ATTR static void NAME(const Mac *m, long long t, int o, long long j0, long long j1)   \
    {                                                                                     \
        const long long plane = m->n * m->bins * 2, kplane = m->bins * 2;                 \
        const float *s0 = m->s + (size_t)((o / m->og) * m->cg) * plane + t * m->bins * 2; \
        const float *k0 = m->k + (size_t)o * m->cg * kplane;                              \
        float *out = m->acc + (size_t)o * plane + t * m->bins * 2;                        \
        long long f = j0 * 2;                                                             \
        for (; f + (VW) <= j1 * 2; f += (VW)) {                                           \
            /* p: (a·c, b·d), q: (b·c, a·d) per bin, summed over the input channels */    \
            NAME##_v p = {0}, q = {0};                                                    \
            for (int c = 0; c < m->cg; c++) {                                             \
                const NAME##_v s = *(const NAME##_v *)(s0 + c * plane + f);               \
                const NAME##_v k = *(const NAME##_v *)(k0 + c * kplane + f);              \
                p += s * k;                                                               \
                q += __builtin_shuffle(s, (NAME##_i)SWAP) * k;                            \
            }                                                                             \
            /* re = a·c - b·d, im = a·d + b·c */                                          \
            const NAME##_v re = p - __builtin_shuffle(p, (NAME##_i)SWAP);                 \
            const NAME##_v im = q + __builtin_shuffle(q, (NAME##_i)SWAP);                 \
            const NAME##_v both = __builtin_shuffle(re, im, (NAME##_i)EVEN);              \
            *(NAME##_v *)(out + f) = both;                                                \
        }                                                                                 \
        for (; f < j1 * 2; f += 2) {                                                      \
            float re = 0.0f, im = 0.0f;                                                   \
            for (int c = 0; c < m->cg; c++) {                                             \
                const float a = s0[c * plane + f], b = s0[c * plane + f + 1];             \
                const float kc = k0[c * kplane + f], kd = k0[c * kplane + f + 1];         \
                re += a * kc - b * kd;                                                    \
                im += a * kd + b * kc;                                                    \
            }                                                                             \
            out[f] = re;                                                                  \
            out[f + 1] = im;                                                              \
        }                                                                                 \
    }

#define SWAP4 {1, 0, 3, 2}
#define EVEN4 {0, 5, 2, 7}
#define SWAP8 {1, 0, 3, 2, 5, 4, 7, 6}
#define EVEN8 {0, 9, 2, 11, 4, 13, 6, 15}
#define SWAP16 {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}
#define EVEN16 {0, 17, 2, 19, 4, 21, 6, 23, 8, 25, 10, 27, 12, 29, 14, 31}

typedef void (*MacFn)(const Mac *, long long, int, long long, long long);

MAC(mac_generic, , 4, SWAP4, EVEN4)
#ifdef ISA_X86
MAC(mac_avx2, ISA_AVX2_ATTR, 8, SWAP8, EVEN8)
MAC(mac_avx512, ISA_AVX512_ATTR, 16, SWAP16, EVEN16)
#endif

static MacFn mac_fn(int isa)
{
#ifdef ISA_X86
    if (isa == ISA_AVX512)
        return mac_avx512;
    if (isa == ISA_AVX2)
        return mac_avx2;
#endif
    (void)isa;
    return mac_generic;
}

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
    const int isa = isa_named(name);
    int bad = 0;
    if (isa < 0) {
        PyErr_Format(PyExc_ValueError, "instruction set '%s' not available here", name);
        bad = 1;
    }
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
        const MacFn fn = mac_fn(isa);
        Py_BEGIN_ALLOW_THREADS
        run(fn, &m, j0, j1);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&s);
    PyBuffer_Release(&k);
    PyBuffer_Release(&acc);
    if (bad)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"accumulate", accumulate, METH_VARARGS,
     "accumulate(spectra, kernels, acc, (cin, cout, cg, og, n, bins), j0, j1[, isa])"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_spectral",
                                    "Fused multiply-accumulate of spectra (engine/fft.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spectral(void) { return PyModule_Create(&module); }
