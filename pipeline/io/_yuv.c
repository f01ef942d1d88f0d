/* BGR (8-bit, interleaved) -> planar YUV 4:2:0 with a chosen matrix and range, for the
 * video writer (pipeline/io/video.py).
 *
 * Why it exists: swscale's bgr24 -> yuv420p with accurate rounding (its default rounding
 * gave a flat gray 30 back as (26, 29, 27)) took 3.6-4.3 ms a 720p frame on this machine,
 * the writer's largest cost after the encoder itself; OpenCV's cvtColor is fast but
 * knows only BT.601. This is one pass over the frame in 16-bit fixed point.
 *
 * Y  = yoff + ky_r R + ky_g G + ky_b B                      per pixel
 * Cb = 128  + ku_r R + ku_g G + ku_b B, Cr likewise (kv)    on the mean of each 2x2 block
 * (chroma sited at the centre of its block, as JPEG and MPEG-1; H.264's default siting is
 * half a pixel to the left: no visible difference at 4:2:0, and players do not resample
 * for it). Coefficients arrive as floats and are rounded to Q16 here; every result is
 * rounded to nearest and clipped to 0..255. Width and height must be even (the writer
 * pads odd frames first).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

/* Each loop reads or writes memory in one simple pattern so the compiler vectorises it;
 * target_clones builds an AVX2 copy beside the baseline and picks one at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

CLONES static void luma(const uint8_t *restrict s, uint8_t *restrict y, int width,
                        int32_t kr, int32_t kg, int32_t kb, int32_t bias)
{
    for (int i = 0; i < width; i++) {
        int32_t t = (kb * s[3 * i] + kg * s[3 * i + 1] + kr * s[3 * i + 2] + bias) >> 16;
        t = t < 0 ? 0 : t;
        y[i] = (uint8_t)(t > 255 ? 255 : t);
    }
}

/* The sums of B, G and R over each 2x2 block of rows s0, s1. */
CLONES static void block_sums(const uint8_t *restrict s0, const uint8_t *restrict s1,
                              int16_t *restrict sb, int16_t *restrict sg,
                              int16_t *restrict sr, int half)
{
    for (int i = 0; i < half; i++) {
        sb[i] = (int16_t)(s0[6 * i] + s0[6 * i + 3] + s1[6 * i] + s1[6 * i + 3]);
        sg[i] = (int16_t)(s0[6 * i + 1] + s0[6 * i + 4] + s1[6 * i + 1] + s1[6 * i + 4]);
        sr[i] = (int16_t)(s0[6 * i + 2] + s0[6 * i + 5] + s1[6 * i + 2] + s1[6 * i + 5]);
    }
}

CLONES static void chroma(const int16_t *restrict sb, const int16_t *restrict sg,
                          const int16_t *restrict sr, uint8_t *restrict out, int half,
                          int32_t kr, int32_t kg, int32_t kb)
{
    const int32_t bias = (128 << 18) + (1 << 17);
    for (int i = 0; i < half; i++) {
        int32_t t = (kb * sb[i] + kg * sg[i] + kr * sr[i] + bias) >> 18;
        t = t < 0 ? 0 : t;
        out[i] = (uint8_t)(t > 255 ? 255 : t);
    }
}

static int convert(const uint8_t *src, Py_ssize_t sstride, int width, int height,
                   uint8_t *y, Py_ssize_t ystride, uint8_t *u, Py_ssize_t ustride,
                   uint8_t *v, Py_ssize_t vstride, const int32_t k[9], int32_t yoff)
{
    const int half = width / 2;
    int16_t *sums = malloc(sizeof(int16_t) * 3 * (size_t)half);
    if (sums == NULL)
        return -1;
    const int32_t ybias = (yoff << 16) + (1 << 15);
    for (int r = 0; r < height; r += 2) {
        const uint8_t *s0 = src + (Py_ssize_t)r * sstride, *s1 = s0 + sstride;
        luma(s0, y + (Py_ssize_t)r * ystride, width, k[0], k[1], k[2], ybias);
        luma(s1, y + (Py_ssize_t)(r + 1) * ystride, width, k[0], k[1], k[2], ybias);
        block_sums(s0, s1, sums, sums + half, sums + 2 * half, half);
        chroma(sums, sums + half, sums + 2 * half, u + (Py_ssize_t)(r / 2) * ustride, half,
               k[3], k[4], k[5]);
        chroma(sums, sums + half, sums + 2 * half, v + (Py_ssize_t)(r / 2) * vstride, half,
               k[6], k[7], k[8]);
    }
    free(sums);
    return 0;
}

static PyObject *bgr_to_yuv420(PyObject *self, PyObject *args)
{
    Py_buffer src, yb, ub, vb;
    Py_ssize_t sstride, ystride, ustride, vstride;
    int width, height, yoff;
    double k[9];
    if (!PyArg_ParseTuple(args, "y*niiw*nw*nw*n(ddddddddd)i", &src, &sstride, &width, &height,
                          &yb, &ystride, &ub, &ustride, &vb, &vstride, &k[0], &k[1], &k[2],
                          &k[3], &k[4], &k[5], &k[6], &k[7], &k[8], &yoff))
        return NULL;
    PyObject *result = NULL;
    if (width <= 0 || height <= 0 || width % 2 || height % 2) {
        PyErr_SetString(PyExc_ValueError, "width and height must be even and positive");
    } else if (src.len < (height - 1) * sstride + 3 * (Py_ssize_t)width ||
               yb.len < (height - 1) * ystride + width ||
               ub.len < (height / 2 - 1) * ustride + width / 2 ||
               vb.len < (height / 2 - 1) * vstride + width / 2) {
        PyErr_SetString(PyExc_ValueError, "a buffer is smaller than its frame");
    } else {
        int32_t q[9];
        for (int i = 0; i < 9; i++)
            q[i] = (int32_t)(k[i] * 65536.0 + (k[i] < 0 ? -0.5 : 0.5));
        int failed;
        Py_BEGIN_ALLOW_THREADS
        failed = convert(src.buf, sstride, width, height, yb.buf, ystride, ub.buf, ustride,
                         vb.buf, vstride, q, yoff);
        Py_END_ALLOW_THREADS
        if (failed) {
            PyErr_NoMemory();
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&yb);
    PyBuffer_Release(&ub);
    PyBuffer_Release(&vb);
    return result;
}

static PyMethodDef methods[] = {
    {"bgr_to_yuv420", bgr_to_yuv420, METH_VARARGS,
     "bgr_to_yuv420(src, src_stride, width, height, y, y_stride, u, u_stride, v, v_stride, "
     "(9 coefficients: Y, Cb, Cr rows of R, G, B weights), y_offset)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_yuv", NULL, -1, methods};

PyMODINIT_FUNC PyInit__yuv(void) { return PyModule_Create(&module); }
