/* What the engine's C kernels (_correlate.c, _spectral.c) share: which instruction-set
 * variant runs (the best this CPU has, or one named by a test), the vector type, and the
 * check that a buffer from Python is large enough. Include after Python.h.
 *
 * Each kernel is compiled once per variant with gcc/clang vector extensions and
 * ``target`` attributes; ISA_AVX2_ATTR / ISA_AVX512_ATTR are those attributes, and
 * ISA_X86 says whether the x86 variants exist in this build at all.
 */
#ifndef PIPELINE_SHARED_H
#define PIPELINE_SHARED_H

#include <string.h>

/* A vector of VW floats that may sit at any float's address and alias float arrays:
 * loads and stores through it are single unaligned vector moves. (memcpy into a vector
 * was split into 16-byte moves and a trip through the stack in the AVX2 variants:
 * measured 6x slower than plain C.) */
#define ISA_VECTOR(VW) __attribute__((vector_size((VW) * 4), aligned(4), may_alias))

enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ISA_X86 1
#define ISA_AVX2_ATTR __attribute__((target("avx2,fma")))
#define ISA_AVX512_ATTR __attribute__((target("avx512f,fma")))
#endif

static int isa_supported(int isa)
{
    if (isa == ISA_GENERIC)
        return 1;
#ifdef ISA_X86
    __builtin_cpu_init();
    if (isa == ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512)
        return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

static int isa_best(void)
{
    return isa_supported(ISA_AVX512) ? ISA_AVX512 : isa_supported(ISA_AVX2) ? ISA_AVX2
                                                                             : ISA_GENERIC;
}

static const char *const isa_names[] = {"generic", "avx2", "avx512"};

/* The variant called ``name`` (NULL: the best), or -1 where this CPU cannot run it. */
static int isa_named(const char *name)
{
    if (name == NULL)
        return isa_best();
    for (int i = 0; i < 3; i++)
        if (strcmp(name, isa_names[i]) == 0)
            return isa_supported(i) ? i : -1;
    return -1;
}

/* ``isa_named``, with a ValueError set where that is -1 (the caller returns NULL). */
static int isa_or_error(const char *name)
{
    const int isa = isa_named(name);
    if (isa < 0)
        PyErr_Format(PyExc_ValueError, "instruction set '%s' not available here", name);
    return isa;
}

/* The variant's one of three functions (the generic one where x86 variants are not built). */
#ifdef ISA_X86
#define ISA_PICK(isa, generic, avx2, avx512) \
    ((isa) == ISA_AVX512 ? (avx512) : (isa) == ISA_AVX2 ? (avx2) : (generic))
#else
#define ISA_PICK(isa, generic, avx2, avx512) (generic)
#endif

/* Whether buffer ``b`` holds fewer than ``floats`` floats: then a ValueError naming
 * ``what`` is set, and the caller returns NULL. */
static int too_small(const Py_buffer *b, long long floats, const char *what)
{
    if (b->len < floats * (long long)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %lld", what, b->len,
                     floats * (long long)sizeof(float));
        return 1;
    }
    return 0;
}

/* ``y`` (a vector of type VT, MT the int vector of its size) with its negative lanes
 * cleared: a ReLU that keeps NaN, as torch's does (NaN < 0 is false). */
#define ISA_RELU(y, VT, MT) ((VT)((MT)(y) & ~((y) < (VT){0})))

/* The end of a call from Python: release the buffers it viewed (an empty view, obj
 * NULL, is skipped) and return NULL (an error is set) if ``bad``, else None. */
static PyObject *finish(int bad, Py_buffer *const views[], int n)
{
    for (int i = 0; i < n; i++)
        if (views[i]->obj != NULL)
            PyBuffer_Release(views[i]);
    if (bad)
        return NULL;
    Py_RETURN_NONE;
}

/* ``obj``'s floats (None: NULL, and ``view`` left empty), viewed into ``view``; sets *bad
 * (a Python error is set) if it has no buffer. Release ``view`` when ``view->obj``. */
static const float *optional_floats(PyObject *obj, Py_buffer *view, int *bad)
{
    if (*bad || obj == Py_None)
        return NULL;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        *bad = 1;
        return NULL;
    }
    return view->buf;
}

#endif
