/* _kallsyms: /proc/kallsyms parsed into the sorted rows of the kernel symbol table (issue 13).
 *
 * Why this file exists: the agent loads the kernel's symbol table when the first kernel frame
 * arrives, on its pipeline thread, with events queueing meanwhile. Parsing its ~120,000 lines in
 * Python took ~0.16 s of the ~0.26 s load (reading the file: ~0.04 s). This does the parse, the
 * sort and the alias ranking of canonical/kallsyms_rows.py (parse, then Rows.sort) in one call,
 * most of it with the GIL released, and gives the same rows:
 *
 *   rows(fd) -> (addrs, names, name_off, hashes, mods, mod_fields)
 *
 * fd: the file, read to its end here, a piece at a time (what is held grows with the rows kept, not
 * with the file). Kept are lines (split on '\n') of at least three fields (split on ASCII
 * whitespace, as bytes.split()), whose second field is exactly t, T, w or W and whose first is
 * what int(field, 16) reads as a number in [0, 2**64) (sign, 0x prefix, single underscores
 * between digits included). A name that is not valid UTF-8 is replaced by the UTF-8 of its
 * decoding with U+FFFD (Python's own decoder decides). Rows are in address order, and among
 * equal addresses by alias rank (fewest leading underscores, fewest code points, then the
 * name's code points, which for valid UTF-8 is its byte order), the file's order last.
 * Returned: addresses (native uint64), the names each followed by '\n', the offsets where
 * each name starts (n + 1 native uint64), hash(name) & 0xFFFFFFFF (native uint32), the index
 * of each row's module field (native uint32) and those fields (index 0: b"", no module).
 *
 * The table's deflated names, name index and entries: _kallsyms_table.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "_kallsyms.h"

typedef struct {
    uint64_t addr;
    const uint8_t *name; /* into data, or into a replacement kept alive in `keep` */
    const uint8_t *mod;  /* the module field, NULL: none */
    uint32_t name_len;
    uint32_t mod_len;
    uint32_t rec;     /* file order: the sort's last key */
    uint32_t us;      /* leading underscores of the name */
    uint32_t points;  /* code points of the name */
    uint32_t mod_id;
    uint8_t high;     /* the name has a byte >= 0x80 (checked with the GIL held) */
} Row;

static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* int(field, 16) when it is in [0, 2**64): 1 and *out; else 0. */
static int parse_hex(const uint8_t *s, size_t n, uint64_t *out) {
    size_t i = 0;
    int negative = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
    int after_digit = 0; /* an underscore may follow a digit or the 0x prefix */
    if (i + 1 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) i += 2, after_digit = 1;
    uint64_t v = 0;
    int digits = 0, overflow = 0;
    for (; i < n; i++) {
        if (s[i] == '_') {
            if (!after_digit || i + 1 == n) return 0;
            after_digit = 0;
            continue;
        }
        int d = hex_digit(s[i]);
        if (d < 0) return 0;
        if (v >> 60) overflow = 1;
        v = v << 4 | (uint64_t)d;
        digits++, after_digit = 1;
    }
    if (!digits || !after_digit || overflow || (negative && v)) return 0;
    *out = v;
    return 1;
}

static int by_rank(const void *a, const void *b) {
    const Row *x = a, *y = b;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    if (x->us != y->us) return x->us < y->us ? -1 : 1;
    if (x->points != y->points) return x->points < y->points ? -1 : 1;
    uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    if (x->name_len != y->name_len) return x->name_len < y->name_len ? -1 : 1;
    return x->rec < y->rec ? -1 : (x->rec > y->rec);
}

static void rank_fields(Row *r) {
    uint32_t us = 0, points = 0;
    while (us < r->name_len && r->name[us] == '_') us++;
    for (uint32_t i = 0; i < r->name_len; i++) points += (r->name[i] & 0xC0) != 0x80;
    r->us = us, r->points = points;
}

/* The rows kept so far, their names and module fields copied out of the buffer read: the file is
 * read a piece at a time, so what is held grows with the rows kept, not with the file. */
typedef struct {
    Row *rows;
    size_t n, cap;
    uint8_t *kept; /* the kept rows' names and module fields, back to back */
    size_t kept_len, kept_cap;
} Scan;

/* Copy len bytes to s->kept; their offset there in *at (a Row holds it until the reading ends). */
static int keep_bytes(Scan *s, const uint8_t *p, size_t len, const uint8_t **at) {
    if (s->kept_cap - s->kept_len < len) {
        size_t cap = s->kept_cap ? s->kept_cap : (size_t)1 << 16;
        while (cap - s->kept_len < len) cap *= 2;
        uint8_t *grown = realloc(s->kept, cap);
        if (!grown) return -1;
        s->kept = grown, s->kept_cap = cap;
    }
    memcpy(s->kept + s->kept_len, p, len);
    *at = (const uint8_t *)(uintptr_t)s->kept_len;
    s->kept_len += len;
    return 0;
}

/* The kept lines of data (whole lines; at the end of the file, what is left) into s->rows (no
 * Python object: run without the GIL). -1: no memory. */
static int scan(Scan *s, const uint8_t *data, size_t len) {
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
        const uint8_t *f[4];
        size_t fl[4];
        int k = 0;
        const uint8_t *q = p;
        while (k < 4) {
            while (q < eol && is_space(*q)) q++;
            if (q == eol) break;
            const uint8_t *start = q;
            while (q < eol && !is_space(*q)) q++;
            f[k] = start, fl[k] = (size_t)(q - start), k++;
        }
        p = nl ? nl + 1 : end;
        if (k < 3 || fl[1] != 1) continue;
        uint8_t t = f[1][0];
        if (t != 't' && t != 'T' && t != 'w' && t != 'W') continue;
        uint64_t addr;
        if (!parse_hex(f[0], fl[0], &addr)) continue;
        if (fl[2] > UINT32_MAX || (k == 4 && fl[3] > UINT32_MAX) || s->n >= UINT32_MAX - 1) continue;
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 1024;
            Row *grown = realloc(s->rows, cap * sizeof *grown);
            if (!grown) return -1;
            s->rows = grown, s->cap = cap;
        }
        Row *r = &s->rows[s->n];
        r->addr = addr, r->name_len = (uint32_t)fl[2], r->rec = (uint32_t)s->n;
        r->mod_len = k == 4 ? (uint32_t)fl[3] : 0; /* a field is never empty: 0 is no module */
        r->mod = NULL;
        if (keep_bytes(s, f[2], fl[2], &r->name) < 0) return -1;
        if (k == 4 && keep_bytes(s, f[3], fl[3], &r->mod) < 0) return -1;
        r->high = 0;
        for (uint32_t i = 0; i < r->name_len; i++) r->high |= f[2][i] >> 7;
        s->n++;
    }
    return 0;
}

/* The file at fd, from where it stands to its end, read and scanned a piece at a time without
 * the GIL (each read of /proc/kallsyms returns about a page: a thousand reads, each taking the GIL
 * again behind a busy thread, when Python reads it). The buffer holds 1 MiB, more only while one
 * line is longer. Then each row's name and module point into s->kept. 0, or an errno. */
static int read_scan(int fd, Scan *s) {
    size_t cap = (size_t)1 << 20, have = 0;
    uint8_t *buf = malloc(cap);
    int err = buf ? 0 : ENOMEM, eof = 0;
    while (!err && !eof) {
        if (cap - have < ((size_t)1 << 16)) { /* a line longer than the buffer so far */
            uint8_t *grown = realloc(buf, cap * 2);
            if (!grown) {
                err = ENOMEM;
                break;
            }
            buf = grown, cap *= 2;
        }
        ssize_t got = read(fd, buf + have, cap - have);
        if (got < 0) {
            if (errno != EINTR) err = errno;
            continue;
        }
        eof = got == 0;
        size_t end = have + (size_t)got; /* what to scan: up to the last line end read, all at the end */
        if (!eof) { /* what was carried over holds no line end: look in what came */
            while (end > have && buf[end - 1] != '\n') end--;
            if (end == have) end = 0; /* none yet: the line goes on */
        }
        have += (size_t)got;
        if (end && scan(s, buf, end) < 0) {
            err = ENOMEM;
            break;
        }
        memmove(buf, buf + end, have - end);
        have -= end;
    }
    free(buf);
    for (size_t i = 0; !err && i < s->n; i++) { /* offsets into kept, now that it moves no more */
        Row *r = &s->rows[i];
        r->name = s->kept + (uintptr_t)r->name;
        r->mod = r->mod_len ? s->kept + (uintptr_t)r->mod : NULL;
    }
    return err;
}

/* With the GIL: names that are not valid UTF-8 replaced (kept alive in keep), module ids. */
static int name_rows(Row *rows, Py_ssize_t n, PyObject *keep, PyObject *mod_fields) {
    PyObject *ids = PyDict_New();
    if (!ids) return -1;
    const uint8_t *last = NULL;
    uint32_t last_len = 0, last_id = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Row *r = &rows[i];
        if (r->high) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)r->name, r->name_len, "replace");
            PyObject *utf8 = text ? PyUnicode_AsUTF8String(text) : NULL;
            Py_XDECREF(text);
            if (!utf8 || PyList_Append(keep, utf8) < 0) {
                Py_XDECREF(utf8);
                goto fail;
            }
            Py_DECREF(utf8);
            r->name = (const uint8_t *)PyBytes_AS_STRING(utf8); /* alive in keep */
            r->name_len = (uint32_t)PyBytes_GET_SIZE(utf8);
        }
        rank_fields(r);
        if (!r->mod) {
            r->mod_id = 0;
            continue;
        }
        if (!(last && last_len == r->mod_len && !memcmp(last, r->mod, r->mod_len))) {
            PyObject *field = PyBytes_FromStringAndSize((const char *)r->mod, r->mod_len);
            if (!field) goto fail;
            PyObject *id = PyDict_GetItemWithError(ids, field);
            if (id) {
                last_id = (uint32_t)PyLong_AsUnsignedLong(id);
            } else if (PyErr_Occurred()) {
                Py_DECREF(field);
                goto fail;
            } else {
                last_id = (uint32_t)PyList_GET_SIZE(mod_fields);
                PyObject *v = PyLong_FromUnsignedLong(last_id);
                int bad = !v || PyDict_SetItem(ids, field, v) < 0 || PyList_Append(mod_fields, field) < 0;
                Py_XDECREF(v);
                if (bad) {
                    Py_DECREF(field);
                    goto fail;
                }
            }
            Py_DECREF(field);
            last = r->mod, last_len = r->mod_len;
        }
        r->mod_id = last_id;
    }
    Py_DECREF(ids);
    return 0;
fail:
    Py_DECREF(ids);
    return -1;
}

/* hash(bytes) of the name, as Python gives it (the lookups hash with Python later). The call
 * moved: _Py_HashBytes up to 3.12, internal in 3.13 (there: what it does, with the public
 * PyHash_GetFuncDef, for the default Py_HASH_CUTOFF of 0), Py_HashBuffer from 3.14. Any of them
 * runs without the GIL (no object touched). tests/unit/test_kallsyms_native_pythons.py. */
static Py_hash_t hash_bytes(const uint8_t *s, Py_ssize_t n) {
#if PY_VERSION_HEX >= 0x030E0000
    return Py_HashBuffer(s, n);
#elif PY_VERSION_HEX >= 0x030D0000
#if Py_HASH_CUTOFF > 0
#error "Python 3.13 built with Py_HASH_CUTOFF > 0: its small-buffer hash is not public (the Python path is used)"
#endif
    if (n == 0) return 0;
    Py_hash_t x = PyHash_GetFuncDef()->hash(s, n);
    return x == -1 ? -2 : x;
#else
    return _Py_HashBytes(s, n);
#endif
}

static PyObject *kallsyms_rows(PyObject *self, PyObject *arg) {
    (void)self;
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) return NULL;
    Scan sc = {0};
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = read_scan(fd, &sc);
    Py_END_ALLOW_THREADS
    if (err) {
        free(sc.rows);
        free(sc.kept);
        errno = err;
        return PyErr_SetFromErrno(err == ENOMEM ? PyExc_MemoryError : PyExc_OSError);
    }
    Row *rows = sc.rows;
    Py_ssize_t n = (Py_ssize_t)sc.n;
    PyObject *keep = PyList_New(0), *mod_fields = PyList_New(0), *out = NULL, *empty = NULL;
    PyObject *addrs = NULL, *names = NULL, *offs = NULL, *hashes = NULL, *mods = NULL;
    if (!keep || !mod_fields) goto done;
    if (!(empty = PyBytes_FromStringAndSize("", 0)) || PyList_Append(mod_fields, empty) < 0) goto done;
    if (name_rows(rows, n, keep, mod_fields) < 0) goto done;
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) total += (size_t)rows[i].name_len + 1;
    if (total > PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        goto done;
    }
    addrs = PyBytes_FromStringAndSize(NULL, n * 8);
    names = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    offs = PyBytes_FromStringAndSize(NULL, (n + 1) * 8);
    hashes = PyBytes_FromStringAndSize(NULL, n * 4);
    mods = PyBytes_FromStringAndSize(NULL, n * 4);
    if (!addrs || !names || !offs || !hashes || !mods) goto done;
    uint64_t *a = (uint64_t *)PyBytes_AS_STRING(addrs), *o = (uint64_t *)PyBytes_AS_STRING(offs);
    uint32_t *h = (uint32_t *)PyBytes_AS_STRING(hashes), *m = (uint32_t *)PyBytes_AS_STRING(mods);
    uint8_t *s = (uint8_t *)PyBytes_AS_STRING(names);
    Py_BEGIN_ALLOW_THREADS
    int ordered = 1;
    for (Py_ssize_t i = 1; i < n && ordered; i++) ordered = by_rank(&rows[i - 1], &rows[i]) < 0;
    if (!ordered) qsort(rows, (size_t)n, sizeof *rows, by_rank);
    size_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Row *r = &rows[i];
        a[i] = r->addr, o[i] = at, m[i] = r->mod_id;
        h[i] = (uint32_t)((uint64_t)hash_bytes(r->name, r->name_len) & 0xFFFFFFFFu);
        memcpy(s + at, r->name, r->name_len);
        at += r->name_len;
        s[at++] = '\n';
    }
    o[n] = at;
    Py_END_ALLOW_THREADS
    out = PyTuple_Pack(6, addrs, names, offs, hashes, mods, mod_fields);
done:
    free(rows);
    free(sc.kept);
    Py_XDECREF(keep);
    Py_XDECREF(mod_fields);
    Py_XDECREF(empty);
    Py_XDECREF(addrs);
    Py_XDECREF(names);
    Py_XDECREF(offs);
    Py_XDECREF(hashes);
    Py_XDECREF(mods);
    return out;
}

static PyMethodDef methods[] = {
    {"rows", kallsyms_rows, METH_O,
     "rows(fd) -> (addrs, names, name_off, hashes, mods, mod_fields): the text symbol rows of a\n"
     "/proc/kallsyms image, sorted and ranked as canonical/kallsyms_rows.py's parse and Rows.sort"},
    {"blocks", kallsyms_blocks, METH_VARARGS,
     "blocks(names, name_off, block_names, level, wbits, mem_level) -> (zblob, zoff): compress_names"},
    {"name_index", kallsyms_name_index, METH_VARARGS,
     "name_index(hashes, shift, bits) -> (keys, check): name_index's sorted keys and check_bytes"},
    {"entries", kallsyms_entries, METH_VARARGS,
     "entries(addrs, mods) -> (visible, entry_addrs, entry_rec, mod_starts, mod_ids): _build's entries"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kallsyms", "/proc/kallsyms parsed into sorted rows, natively.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kallsyms(void) { return PyModule_Create(&module); }
