/* _kallsyms_table: the kernel symbol table built from canonical/_kallsyms.c's rows (issue 13).
 *
 * Why this file exists: the parts of KernelSymbols' build (canonical/kallsyms.py) that cost most
 * after the parse, done with the GIL released (the Python path releases and takes it again for
 * each of ~7,600 zlib calls, each a wait behind a busy event-loop thread); apart from the parse
 * to keep each file short. Part of the _kallsyms extension (its method table: _kallsyms.c).
 *
 *   blocks(names, name_off, block_names, level, wbits, mem_level) -> (zblob, zoff)
 *       kallsyms_rows.compress_names: the names raw-deflated block by block, one stream with a
 *       full flush after each block, the same zlib calls in the same order (the same bytes);
 *   name_index(hashes, shift, bits) -> (keys, check)
 *       kallsyms_rows.name_index's sorted ``bucket << shift | record`` keys (native uint32, or
 *       uint64 when shift + bits > 32, as the array's typecode) and check_bytes' per-record byte;
 *   entries(addrs, mods) -> (visible, entry_addrs, entry_rec, mod_starts, mod_ids)
 *       KernelSymbols._build's entries: one per run of equal addresses (one per row when every
 *       address is 0, as an unprivileged reader sees them), its first row, and the runs of
 *       entries of one module (native uint64 addresses, uint32 the rest).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "_kallsyms.h"

/* deflate until the input is taken and the output not full (as zlib.Compress does). */
static int deflate_into(z_stream *z, int flush, uint8_t **out, size_t *len, size_t *cap) {
    int err;
    do {
        if (*cap - *len < 4096) {
            size_t grown = *cap * 2 + 4096;
            uint8_t *p = realloc(*out, grown);
            if (!p) return Z_MEM_ERROR;
            *out = p, *cap = grown;
        }
        size_t room = *cap - *len;
        if (room > UINT32_MAX) room = UINT32_MAX;
        z->next_out = *out + *len;
        z->avail_out = (uInt)room;
        err = deflate(z, flush);
        *len += room - z->avail_out;
        if (err == Z_BUF_ERROR) err = Z_OK; /* no progress possible: nothing left to do */
        if (err != Z_OK) return err;
    } while (z->avail_out == 0 || z->avail_in != 0);
    return Z_OK;
}

PyObject *kallsyms_blocks(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer names, offs;
    Py_ssize_t block;
    int level, wbits, mem_level;
    if (!PyArg_ParseTuple(args, "y*y*niii", &names, &offs, &block, &level, &wbits, &mem_level)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = offs.len / 8 - 1, nb = 0;
    const uint64_t *off = offs.buf;
    uint32_t *zoff = NULL;
    uint8_t *out = NULL;
    size_t len = 0, cap = 0;
    int err = Z_OK, bad = n < 0 || offs.len % 8 != 0;
    for (Py_ssize_t i = 0; !bad && i < n; i++) bad = off[i] > off[i + 1];
    if (bad || off[n] > (uint64_t)names.len) {
        PyErr_SetString(PyExc_ValueError, "name offsets do not fit the names");
        goto done;
    }
    if (block < 1) { /* checked before it divides (a block of 0: SIGFPE, the agent gone) */
        PyErr_SetString(PyExc_ValueError, "a block holds at least one name");
        goto done;
    }
    nb = n / block + (n % block != 0); /* (n + block - 1) / block overflows near 2**63 */
    if (!(zoff = malloc((size_t)(nb + 1) * sizeof *zoff))) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    z_stream z;
    memset(&z, 0, sizeof z);
    err = deflateInit2(&z, level, Z_DEFLATED, wbits, mem_level, Z_DEFAULT_STRATEGY);
    zoff[0] = 0;
    for (Py_ssize_t b = 0; err == Z_OK && b < nb; b++) {
        Py_ssize_t lo = b * block, hi = lo + block < n ? lo + block : n;
        z.next_in = (uint8_t *)names.buf + off[lo];
        z.avail_in = (uInt)(off[hi] - off[lo]);
        err = deflate_into(&z, Z_NO_FLUSH, &out, &len, &cap);
        if (err == Z_OK) err = deflate_into(&z, Z_FULL_FLUSH, &out, &len, &cap);
        if (len > UINT32_MAX) err = Z_MEM_ERROR;
        zoff[b + 1] = (uint32_t)len;
    }
    deflateEnd(&z);
    Py_END_ALLOW_THREADS
    if (err != Z_OK) {
        PyErr_Format(err == Z_MEM_ERROR ? PyExc_MemoryError : PyExc_ValueError, "deflate failed (%d)", err);
        goto done;
    }
    PyObject *zblob = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
    PyObject *starts = PyBytes_FromStringAndSize((const char *)zoff, (nb + 1) * 4);
    if (zblob && starts) result = PyTuple_Pack(2, zblob, starts);
    Py_XDECREF(zblob);
    Py_XDECREF(starts);
done:
    free(out);
    free(zoff);
    PyBuffer_Release(&names);
    PyBuffer_Release(&offs);
    return result;
}

static int by_key(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : (x > y);
}

PyObject *kallsyms_name_index(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer hashes;
    int shift, bits;
    if (!PyArg_ParseTuple(args, "y*ii", &hashes, &shift, &bits)) return NULL;
    Py_ssize_t n = hashes.len / 4;
    PyObject *keys = NULL, *check = NULL, *result = NULL;
    if (hashes.len % 4 || shift < 1 || bits < 1 || shift + bits > 64 || bits > 32 || (n >> shift)) {
        PyErr_SetString(PyExc_ValueError, "hashes, shift or bits out of range");
        goto done;
    }
    int wide = shift + bits > 32; /* keys of 64 bits, else 32 (the array's typecode Q or I) */
    keys = PyBytes_FromStringAndSize(NULL, n * (wide ? 8 : 4));
    check = PyBytes_FromStringAndSize(NULL, n);
    uint64_t *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!keys || !check || !k) {
        free(k);
        if (!k) PyErr_NoMemory();
        goto done;
    }
    const uint32_t *h = hashes.buf;
    uint64_t mask = (bits == 32 ? 0 : (1ULL << bits)) - 1;
    uint8_t *c = (uint8_t *)PyBytes_AS_STRING(check), *dst = (uint8_t *)PyBytes_AS_STRING(keys);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < n; r++) {
        k[r] = ((uint64_t)h[r] & mask) << shift | (uint64_t)r;
        c[r] = (uint8_t)((uint64_t)h[r] >> bits);
    }
    qsort(k, (size_t)n, sizeof *k, by_key);
    for (Py_ssize_t r = 0; r < n; r++) {
        if (wide) {
            memcpy(dst + 8 * r, &k[r], 8);
        } else {
            uint32_t narrow = (uint32_t)k[r];
            memcpy(dst + 4 * r, &narrow, 4);
        }
    }
    Py_END_ALLOW_THREADS
    free(k);
    result = PyTuple_Pack(2, keys, check);
done:
    Py_XDECREF(keys);
    Py_XDECREF(check);
    PyBuffer_Release(&hashes);
    return result;
}

PyObject *kallsyms_entries(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer ab, mb;
    if (!PyArg_ParseTuple(args, "y*y*", &ab, &mb)) return NULL;
    PyObject *result = NULL, *ea = NULL, *er = NULL, *ms = NULL, *mi = NULL;
    Py_ssize_t n = ab.len / 8, e = 0, runs = 0;
    const uint64_t *a = ab.buf;
    const uint32_t *m = mb.buf;
    if (ab.len % 8 || mb.len != n * 4 || n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "addresses and modules do not match");
        goto done;
    }
    int visible = 0;
    for (Py_ssize_t i = 0; i < n && !visible; i++) visible = a[i] != 0;
    uint32_t last = 0;
    for (Py_ssize_t i = 0; i < n; i++) { /* entries, and runs of one module over them */
        if (visible && i && a[i] == a[i - 1]) continue; /* an alias of the entry before */
        if (!e || m[i] != last) runs++;                  /* an entry's module: its first row's */
        last = m[i], e++;
    }
    ea = PyBytes_FromStringAndSize(NULL, e * 8);
    er = PyBytes_FromStringAndSize(NULL, e * 4);
    ms = PyBytes_FromStringAndSize(NULL, runs * 4);
    mi = PyBytes_FromStringAndSize(NULL, runs * 4);
    if (!ea || !er || !ms || !mi) goto done;
    uint64_t *oa = (uint64_t *)PyBytes_AS_STRING(ea);
    uint32_t *orec = (uint32_t *)PyBytes_AS_STRING(er), *oms = (uint32_t *)PyBytes_AS_STRING(ms);
    uint32_t *omi = (uint32_t *)PyBytes_AS_STRING(mi);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t k = 0, r = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (visible && i && a[i] == a[i - 1]) continue;
        if (!k || m[i] != omi[r - 1]) oms[r] = (uint32_t)k, omi[r] = m[i], r++;
        oa[k] = a[i], orec[k] = (uint32_t)i, k++;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(OOOOO)", visible ? Py_True : Py_False, ea, er, ms, mi);
done:
    Py_XDECREF(ea);
    Py_XDECREF(er);
    Py_XDECREF(ms);
    Py_XDECREF(mi);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&mb);
    return result;
}
