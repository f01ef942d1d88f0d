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

#include "_shared.h"

enum { B_CONSTANT = 0, B_REPLICATE = 1, B_SYMMETRIC = 2, B_REFLECT101 = 3, B_WRAP = 4 };
enum { XB = 3 }; /* vectors per block: a block holds XB·VW floats, a multiple of C */

typedef struct {
    const float *src;
    float *out;
    int h, w, c, ho, wo, kh, kw, dh, dw, top, left, border;
    float value;
    const float *w8;   /* (C, kh, kw) weights */
    const float *bias; /* NULL or C floats */
    int relu, shared;
} Job;

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
    float *wtab;  /* [kh·kw][XB·VW] */
    float *btab;  /* [XB·VW] */
    float *crow;  /* a constant row: (wo + reach)·C floats of ``value`` or NULL */
    float *scratch; /* edge blocks: [rows][span] */
    int span;
} Tables;

/* One block: XB vectors of R output rows. rows[t] (+ off) are the window's input rows:
 * R + kh - 1 of them (dh = 1) when R > 1, else kh (row i·dh). */
#define BLOCK(NAME, ATTR, VW, R, SHARED)                                                    \
    ATTR static void NAME(const Job *jb, const Tables *tb, const float *const *rows,        \
                          ptrdiff_t off, float *const *outs, ptrdiff_t ooff)               \
    {                                                                                       \
        typedef float V ISA_VECTOR(VW);                                                     \
        typedef int M ISA_VECTOR(VW);                                                       \
        const int kh = jb->kh, kw = jb->kw, nt = (R) > 1 ? (R) + kh - 1 : kh;               \
        const ptrdiff_t step = (ptrdiff_t)jb->dw * jb->c;                                   \
        V acc[R][XB];                                                                       \
        memset(acc, 0, sizeof acc);                                                         \
        for (int t = 0; t < nt; t++) {                                                      \
            const float *row = rows[t] + off;                                               \
            for (int j = 0; j < kw; j++) {                                                  \
                V v[XB];                                                                    \
                for (int b = 0; b < XB; b++)                                                \
                    v[b] = *(const V *)(row + j * step + b * (VW));                         \
                for (int q = 0; q < (R); q++) {                                             \
                    const int i = t - q;                                                    \
                    if (i < 0 || i >= kh)                                                   \
                        continue;                                                           \
                    if (SHARED) {                                                           \
                        const float s = jb->w8[i * kw + j];                                 \
                        for (int b = 0; b < XB; b++)                                        \
                            acc[q][b] += s * v[b];                                          \
                    } else {                                                                \
                        const V *wv = (const V *)(tb->wtab + (size_t)(i * kw + j) * XB * (VW)); \
                        for (int b = 0; b < XB; b++)                                        \
                            acc[q][b] += wv[b] * v[b];                                      \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        const V *bv = (const V *)tb->btab;                                                  \
        for (int q = 0; q < (R); q++)                                                       \
            for (int b = 0; b < XB; b++) {                                                  \
                V y = acc[q][b] + bv[b];                                                    \
                if (jb->relu)                                                               \
                    y = ISA_RELU(y, V, M);                                                  \
                *(V *)(outs[q] + ooff + b * (VW)) = y;                                      \
            }                                                                               \
    }

typedef void (*BlockFn)(const Job *, const Tables *, const float *const *, ptrdiff_t,
                        float *const *, ptrdiff_t);

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

/* The source row that padded row ``p`` reads (the constant row past the frame). */
static inline const float *source_row(const Job *jb, const Tables *tb, int p)
{
    const int r = border_index(p - jb->top, jb->h, jb->border);
    return r < 0 ? tb->crow : jb->src + (size_t)r * jb->w * jb->c;
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
            outs[q] = jb->out + (size_t)(r + q) * width;
        for (ptrdiff_t start = 0; start < width; start += block) {
            const ptrdiff_t x = start + block <= width ? start : width - block;
            const ptrdiff_t s = x - lead;
            if (s >= 0 && s + reach + block <= frame) {
                fn(jb, tb, rows, s, outs, x);
            } else {
                for (int t = 0; t < nt; t++)
                    edge_copy(jb, rows[t] == tb->crow ? NULL : rows[t], s, block + (int)reach,
                              tb->scratch + (size_t)t * tb->span);
                fn(jb, tb, srows, 0, outs, x);
            }
        }
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
                                                         : jb->src[((size_t)sr * jb->w + sx) * c + ch];
                        acc += jb->w8[(ch * jb->kh + i) * jb->kw + j] * v;
                    }
                }
                acc += tb->btab[ch];
                jb->out[((size_t)r * jb->wo + x) * c + ch] = jb->relu && acc < 0 ? 0.0f : acc;
            }
}


static int make_tables(const Job *jb, const Isa *isa, Tables *tb)
{
    const int vw = isa->vw, block = XB * vw, taps = jb->kh * jb->kw;
    const int nmax = isa->r + jb->kh - 1 > jb->kh ? isa->r + jb->kh - 1 : jb->kh;
    memset(tb, 0, sizeof *tb);
    tb->span = block + (jb->kw - 1) * jb->dw * jb->c;
    tb->span = (tb->span + 15) & ~15;
    tb->wtab = malloc(sizeof(float) * ((size_t)taps * block + block));
    tb->scratch = malloc(sizeof(float) * (size_t)nmax * tb->span);
    tb->crow = malloc(sizeof(float) * ((size_t)jb->w * jb->c + 1));
    if (!tb->wtab || !tb->scratch || !tb->crow)
        return -1;
    tb->btab = tb->wtab + (size_t)taps * block;
    for (int l = 0; l < block; l++) {
        const int ch = l % jb->c;
        for (int t = 0; t < taps; t++)
            tb->wtab[(size_t)t * block + l] = jb->w8[ch * taps + t];
        tb->btab[l] = jb->bias ? jb->bias[ch] : 0.0f;
    }
    for (size_t f = 0; f < (size_t)jb->w * jb->c; f++)
        tb->crow[f] = jb->value;
    return 0;
}

static void free_tables(Tables *tb)
{
    free(tb->wtab);
    free(tb->scratch);
    free(tb->crow);
}

static PyObject *correlate(PyObject *self, PyObject *args)
{
    Py_buffer src, w, out, bias = {0};
    Job jb;
    int r0, r1;
    const char *name = NULL;
    PyObject *bias_obj = Py_None;
    (void)self;
    jb.relu = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*(iiiiiiiiiii)ifpii|zOp", &src, &w, &out, &jb.h, &jb.w,
                          &jb.c, &jb.ho, &jb.wo, &jb.kh, &jb.kw, &jb.dh, &jb.dw, &jb.top,
                          &jb.left, &jb.border, &jb.value, &jb.shared, &r0, &r1, &name,
                          &bias_obj, &jb.relu))
        return NULL;
    const int variant = isa_or_error(name);
    const Isa *isa = variant < 0 ? NULL : isa_blocks(variant);
    int bad = isa == NULL;
    jb.bias = optional_floats(bias_obj, &bias, &bad);
    if (!bad && (jb.h < 1 || jb.w < 1 || jb.c < 1 || jb.ho < 1 || jb.wo < 1 || jb.kh < 1 ||
                 jb.kw < 1 || jb.dh < 1 || jb.dw < 1 || jb.top < 0 || jb.left < 0 ||
                 jb.border < B_CONSTANT || jb.border > B_WRAP || r0 < 0 || r1 > jb.ho ||
                 r0 > r1 || (XB * isa->vw) % jb.c != 0)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent depthwise shape");
        bad = 1;
    }
    bad = bad || too_small(&src, (long long)jb.h * jb.w * jb.c, "src") ||
          too_small(&w, (long long)jb.c * jb.kh * jb.kw, "weights") ||
          too_small(&out, (long long)jb.ho * jb.wo * jb.c, "out") ||
          (jb.bias != NULL && too_small(&bias, jb.c, "bias"));
    if (!bad) {
        Tables tb;
        jb.src = src.buf;
        jb.w8 = w.buf;
        jb.out = out.buf;
        if (make_tables(&jb, isa, &tb) < 0) {
            free_tables(&tb);
            PyErr_NoMemory();
            bad = 1;
        } else {
            Py_BEGIN_ALLOW_THREADS
            if ((ptrdiff_t)jb.wo * jb.c < XB * isa->vw)
                scalar_rows(&jb, &tb, r0, r1);
            else
                run_rows(isa, &jb, &tb, r0, r1);
            Py_END_ALLOW_THREADS
            free_tables(&tb);
        }
    }
    return finish(bad, (Py_buffer *const[]){&src, &w, &out, &bias}, 4);
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
     "value, shared, r0, r1[, isa[, bias[, relu]]])"},
    {"block", block, METH_VARARGS,
     "block([isa]) -> (floats, rows): a block's floats (C must divide them) and the rows "
     "summed at once"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depthwise",
                                    "Depthwise correlation of interleaved frames (engine/direct.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__depthwise(void) { return PyModule_Create(&module); }
