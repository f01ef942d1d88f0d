/* Direct multi-channel correlation of channel planes, register-blocked, for small kernels.
 *
 * out[o, r, x] = sum over c, i, j of  w[c, i, j, o] * p[c, r + i*dh, x + j*dw]
 *
 * p: (C_in, Hp, Wp) float32 planes, already padded (engine/border.py fill_planar);
 * w: (C_in, kh, kw, C_out) float32, so the weights of one tap for a block of output
 *    channels are adjacent; out: (C_out, H, W) float32; rows r0 <= r < r1 are computed.
 * Optionally a bias (C_out floats) and a ReLU are applied as each value is stored: the
 * bank's epilogue, without another pass over the result.
 *
 * Why it exists: a 3 -> 8 bank with a 3x3 kernel is 27 multiply-adds per output value.
 * im2col + BLAS moves 27 copies of the frame through memory and runs BLAS on a skinny
 * shape; here each output block (OB channels x XB vectors of pixels) stays in registers
 * while every tap is added into it, so one input load feeds OB multiply-adds
 * (README "Methods": 0.6x torch's channels_last conv2d, where im2col + GEMM is 1.8x).
 *
 * Built with gcc/clang vector extensions, one variant per instruction set chosen at run
 * time; a plain C loop covers frames narrower than one block. The extension is optional:
 * without it the engine uses im2col + GEMM (engine/direct.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_shared.h"

typedef struct {
    const float *p, *w;
    float *out;
    int cin, cout, hp, wp, h, wd, kh, kw, dh, dw;
    const float *bias; /* NULL: none; else added to each output channel as it is stored */
    int relu;          /* then max(., 0) as it is stored (NaN stays NaN, as in torch) */
} Job;

/* One output-channel block [o0, o0 + OB) over rows [r0, r1), vectors of VW floats. */
#define BLOCK(NAME, ATTR, VW, OB, XB)                                                    \
    typedef float NAME##_v ISA_VECTOR(VW);                                               \
    typedef int NAME##_m ISA_VECTOR(VW);                                                 \
    ATTR static void NAME(const Job *jb, int o0, int r0, int r1)                         \
    {                                                                                    \
        enum { CHUNK = (VW) * (XB) };                                                    \
        const size_t plane = (size_t)jb->hp * jb->wp, oplane = (size_t)jb->h * jb->wd;   \
        const int wd = jb->wd;                                                           \
        for (int r = r0; r < r1; r++) {                                                  \
            for (int start = 0; start < wd; start += CHUNK) {                            \
                /* the last block ends at the frame's edge, overlapping the one before */ \
                const int x = start + CHUNK <= wd ? start : wd - CHUNK;                  \
                NAME##_v acc[OB][XB];                                                    \
                memset(acc, 0, sizeof acc);                                              \
                const float *wk = jb->w + o0;                                            \
                for (int c = 0; c < jb->cin; c++)                                        \
                    for (int i = 0; i < jb->kh; i++) {                                   \
                        const float *row = jb->p + c * plane                             \
                                           + (size_t)(r + i * jb->dh) * jb->wp + x;      \
                        for (int j = 0; j < jb->kw; j++, wk += jb->cout) {               \
                            NAME##_v v[XB];                                              \
                            for (int b = 0; b < (XB); b++)                               \
                                v[b] = *(const NAME##_v *)(row + j * jb->dw + b * (VW)); \
                            for (int o = 0; o < (OB); o++) {                             \
                                const float s = wk[o];                                   \
                                for (int b = 0; b < (XB); b++)                           \
                                    acc[o][b] += s * v[b];                               \
                            }                                                            \
                        }                                                                \
                    }                                                                    \
                for (int o = 0; o < (OB); o++) {                                         \
                    const float bias = jb->bias ? jb->bias[o0 + o] : 0.0f;               \
                    for (int b = 0; b < (XB); b++) {                                     \
                        NAME##_v y = acc[o][b] + bias;                                   \
                        if (jb->relu)                                                    \
                            y = ISA_RELU(y, NAME##_v, NAME##_m);                         \
                        *(NAME##_v *)(jb->out + (o0 + o) * oplane + (size_t)r * wd + x + \
                                      b * (VW)) = y;                                     \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }

typedef void (*BlockFn)(const Job *, int, int, int);

typedef struct {
    BlockFn fn[4]; /* blocks of 8, 4, 2 and 1 output channels */
    int chunk[4];  /* pixels per block row: the frame must be at least this wide */
} Isa;

#define ISA(PREFIX, ATTR, VW, XB8, XB4, XB2, XB1)                                         \
    BLOCK(PREFIX##_8, ATTR, VW, 8, XB8)                                                   \
    BLOCK(PREFIX##_4, ATTR, VW, 4, XB4)                                                   \
    BLOCK(PREFIX##_2, ATTR, VW, 2, XB2)                                                   \
    BLOCK(PREFIX##_1, ATTR, VW, 1, XB1)                                                   \
    static const Isa PREFIX = {{PREFIX##_8, PREFIX##_4, PREFIX##_2, PREFIX##_1},          \
                               {(VW) * (XB8), (VW) * (XB4), (VW) * (XB2), (VW) * (XB1)}};

/* avx512: 24 accumulators for 8 channels (3 vectors of 16 pixels each) in its 32 registers,
 * a fifth faster than 16 on a 16 -> 16 bank at 720p; avx2 and generic: 8 of 16 registers */
ISA(generic, , 4, 1, 2, 2, 4)
#ifdef ISA_X86
ISA(avx2, ISA_AVX2_ATTR, 8, 1, 2, 2, 4)
ISA(avx512, ISA_AVX512_ATTR, 16, 3, 4, 4, 4)
#endif

/* Any width: one output value at a time, channels o0 on (frames narrower than a block). */
static void scalar_rows(const Job *jb, int o0, int r0, int r1)
{
    const size_t plane = (size_t)jb->hp * jb->wp, oplane = (size_t)jb->h * jb->wd;
    for (int o = o0; o < jb->cout; o++)
        for (int r = r0; r < r1; r++)
            for (int x = 0; x < jb->wd; x++) {
                float acc = 0.0f;
                for (int c = 0; c < jb->cin; c++)
                    for (int i = 0; i < jb->kh; i++)
                        for (int j = 0; j < jb->kw; j++)
                            acc += jb->w[((c * jb->kh + i) * jb->kw + j) * jb->cout + o] *
                                   jb->p[c * plane + (size_t)(r + i * jb->dh) * jb->wp +
                                         x + j * jb->dw];
                acc += jb->bias ? jb->bias[o] : 0.0f;
                jb->out[o * oplane + (size_t)r * jb->wd + x] = jb->relu && acc < 0 ? 0.0f : acc;
            }
}

/* The blocks of variant ``isa`` (an ISA_* index this CPU runs). */
static const Isa *isa_blocks(int isa) { return ISA_PICK(isa, &generic, &avx2, &avx512); }

static void run_rows(const Isa *isa, const Job *jb, int r0, int r1)
{
    for (int o0 = 0; o0 < jb->cout;) {
        const int left = jb->cout - o0;
        const int k = left >= 8 ? 0 : left >= 4 ? 1 : left >= 2 ? 2 : 3;
        if (jb->wd < isa->chunk[k]) {
            scalar_rows(jb, o0, r0, r1);
            return;
        }
        isa->fn[k](jb, o0, r0, r1);
        o0 += 8 >> k;
    }
}

static PyObject *correlate(PyObject *self, PyObject *args)
{
    Py_buffer p, w, out, bias = {0};
    Job jb;
    int r0, r1;
    const char *name = NULL;
    PyObject *bias_obj = Py_None;
    (void)self;
    jb.relu = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*(iiiiiiiiii)ii|zOp", &p, &w, &out, &jb.cin, &jb.cout,
                          &jb.hp, &jb.wp, &jb.h, &jb.wd, &jb.kh, &jb.kw, &jb.dh, &jb.dw,
                          &r0, &r1, &name, &bias_obj, &jb.relu))
        return NULL;
    const int variant = isa_or_error(name);
    const Isa *isa = variant < 0 ? NULL : isa_blocks(variant);
    int bad = isa == NULL;
    jb.bias = optional_floats(bias_obj, &bias, &bad);
    if (!bad && (jb.cin < 1 || jb.cout < 1 || jb.h < 1 || jb.wd < 1 || jb.kh < 1 || jb.kw < 1 ||
        jb.dh < 1 || jb.dw < 1 || r0 < 0 || r1 > jb.h || r0 > r1 ||
        jb.hp < jb.h + (jb.kh - 1) * jb.dh || jb.wp < jb.wd + (jb.kw - 1) * jb.dw)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent correlation shape");
        bad = 1;
    }
    bad = bad || too_small(&p, (long long)jb.cin * jb.hp * jb.wp, "planes") ||
          too_small(&w, (long long)jb.cin * jb.kh * jb.kw * jb.cout, "weights") ||
          too_small(&out, (long long)jb.cout * jb.h * jb.wd, "out") ||
          (jb.bias != NULL && too_small(&bias, jb.cout, "bias"));
    if (!bad) {
        jb.p = p.buf;
        jb.w = w.buf;
        jb.out = out.buf;
        Py_BEGIN_ALLOW_THREADS
        run_rows(isa, &jb, r0, r1);
        Py_END_ALLOW_THREADS
    }
    return finish(bad, (Py_buffer *const[]){&p, &w, &out, &bias}, 4);
}

static PyObject *instruction_set(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(isa_names[isa_best()]);
}

static PyMethodDef methods[] = {
    {"correlate", correlate, METH_VARARGS,
     "correlate(planes, weights, out, (cin, cout, hp, wp, h, w, kh, kw, dh, dw), r0, r1"
     "[, isa[, bias[, relu]]])"},
    {"instruction_set", instruction_set, METH_NOARGS, "the variant used on this CPU"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_correlate",
                                    "Register-blocked direct correlation (engine/direct.py).",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__correlate(void) { return PyModule_Create(&module); }
