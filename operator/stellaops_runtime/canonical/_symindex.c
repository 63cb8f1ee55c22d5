/* _symindex: an ELF symbol table's function index, built natively (issue 12's cold batch).
 *
 * Why this file exists: indexing a symbol table in Python (canonical/symtab.py's
 * function_symbols, then canonical/addrindex.py's AddressTable) was about 164 M
 * instructions of libLLVM-14's 440 M cold batch (docs/benchmarks.md). This module does
 * the same work over the section's bytes in one call, with the GIL released while it
 * reads, sorts and decides:
 *
 *   index(data, strtab, is64, little, arm, sec_addrs, sec_sizes, max_bytes, max_symbols)
 *
 * data: the symbol section's bytes (whole records); strtab: its string table;
 * sec_addrs / sec_sizes: every section's sh_addr and sh_size as native-order uint64
 * arrays (bytes); max_bytes: the name length cap; max_symbols: the symbol budget.
 * Returns
 *   - (starts, ends, name_offsets): three lists, one entry per distinct start, in
 *     start order, exactly the AddressTable canonical/addrindex.py builds (entry i is
 *     named by the string at name_offsets[i]);
 *   - an int: the number of function records when it passes max_symbols (the caller
 *     raises its budget error with it, as the Python path does before building columns);
 *   - None: an alias group this code does not rank (a member's name is not ASCII, where
 *     Python's rank counts and compares code points): the caller uses the Python path.
 *
 * The rules are canonical/symtab.py's and canonical/addrindex.py's (docs/function-ids.md):
 * kept are STT_FUNC / STT_GNU_IFUNC records with st_shndx in 1..0xfeff, a non-zero
 * st_value and a non-empty name inside the string table; on ARM bit 0 of the address is
 * cleared after that test; records are sorted by start, stable; one entry per start,
 * named by the alias group's best member (a size over none, fewest leading underscores,
 * GLOBAL > WEAK > LOCAL, shortest, first by name, the first of equal ranks); its size is
 * the winner's or else the group's largest; a zero size ends at the next start, bounded
 * by the end of the winner's section (start + 1 when neither is known). Ends are exact
 * (65-bit sums become Python ints as Python would make them). Everything read from the
 * file is bounds-checked: offsets, section indices, name lengths, counts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

typedef struct {
    uint64_t start;
    uint64_t size;
    uint32_t rec; /* record number, the sort's tie-break (a stable sort) */
    uint32_t name;
    uint16_t shndx;
    uint8_t bind;
} Sym;

typedef struct {
    const uint8_t *strtab;
    Py_ssize_t strtab_len;
    Py_ssize_t max_bytes;
} Names;

static inline uint16_t rd16(const uint8_t *p, int little) {
    return little ? (uint16_t)(p[0] | (p[1] << 8)) : (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p, int little) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[little ? i : 3 - i] << (8 * i);
    return v;
}

static inline uint64_t rd64(const uint8_t *p, int little) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[little ? i : 7 - i] << (8 * i);
    return v;
}

static int by_start(const void *a, const void *b) {
    const Sym *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->rec < y->rec ? -1 : (x->rec > y->rec);
}

/* The name's length in bytes (up to the NUL, the cap or the table's end); -1 when not ASCII.
 * memchr, then the ASCII test 8 bytes at a time: a hostile alias group can name every member with
 * one long string (a byte loop here made the index slower than the Python path). Offsets compare
 * unsigned (a 32-bit Py_ssize_t would make st_name >= 2^31 negative). */
static Py_ssize_t name_len(const Names *nm, uint32_t off) {
    if ((size_t)off >= (size_t)nm->strtab_len) return 0;
    size_t cap = (size_t)nm->strtab_len - off;
    if (cap > (size_t)nm->max_bytes) cap = (size_t)nm->max_bytes;
    const uint8_t *s = nm->strtab + off, *nul = memchr(s, 0, cap);
    size_t len = nul ? (size_t)(nul - s) : cap, i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL) return -1;
    }
    for (; i < len; i++)
        if (s[i] & 0x80) return -1;
    return (Py_ssize_t)len;
}

static int bind_rank(uint8_t bind) {
    return bind == 1 ? 0 : bind == 2 ? 1 : bind == 0 ? 2 : 3;
}

/* Index (into g) of the group's best member; -1 when a name is not ASCII. */
static Py_ssize_t best_member(const Sym *g, Py_ssize_t count, const Names *nm) {
    Py_ssize_t best = -1, best_len = 0;
    int best_sized = 0, best_us = 0, best_bind = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t len = name_len(nm, g[k].name);
        if (len < 0) return -1;
        const uint8_t *s = nm->strtab + g[k].name;
        int us = 0;
        while (us < len && s[us] == '_') us++;
        int sized = g[k].size != 0, br = bind_rank(g[k].bind);
        if (best >= 0) {
            /* rank: (no size, underscores, bind rank, length, name); strictly lower wins */
            if (sized != best_sized) {
                if (!sized) continue;
            } else if (us != best_us) {
                if (us > best_us) continue;
            } else if (br != best_bind) {
                if (br > best_bind) continue;
            } else if (len != best_len) {
                if (len > best_len) continue;
            } else if (memcmp(s, nm->strtab + g[best].name, (size_t)len) >= 0) {
                continue;
            }
        }
        best = k, best_len = len, best_sized = sized, best_us = us, best_bind = br;
    }
    return best;
}

static PyObject *long_from_u128(u128 v) {
    if (v <= UINT64_MAX) return PyLong_FromUnsignedLongLong((uint64_t)v);
    uint8_t le[16];
    for (int i = 0; i < 16; i++) le[i] = (uint8_t)(v >> (8 * i));
    return _PyLong_FromByteArray(le, sizeof le, 1, 0);
}

/* One index entry: its start, end, and the name offset of its winner. */
typedef struct {
    uint64_t start;
    u128 end;
    uint32_t name;
} Entry;

static PyObject *build_lists(const Entry *e, Py_ssize_t m) {
    PyObject *starts = PyList_New(m), *ends = PyList_New(m), *names = PyList_New(m), *out = NULL;
    if (!starts || !ends || !names) goto done;
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *a = PyLong_FromUnsignedLongLong(e[i].start);
        if (!a) goto done;
        PyList_SET_ITEM(starts, i, a);
        PyObject *b = long_from_u128(e[i].end);
        if (!b) goto done;
        PyList_SET_ITEM(ends, i, b);
        PyObject *c = PyLong_FromUnsignedLong(e[i].name);
        if (!c) goto done;
        PyList_SET_ITEM(names, i, c);
    }
    out = PyTuple_Pack(3, starts, ends, names);
done:
    Py_XDECREF(starts);
    Py_XDECREF(ends);
    Py_XDECREF(names);
    return out;
}

static PyObject *symindex_index(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, strtab, addrs, sizes;
    int is64, little, arm;
    Py_ssize_t max_bytes, max_symbols;
    if (!PyArg_ParseTuple(args, "y*y*pppy*y*nn", &data, &strtab, &is64, &little, &arm, &addrs, &sizes,
                          &max_bytes, &max_symbols))
        return NULL;
    PyObject *result = NULL;
    Sym *syms = NULL;
    Entry *entries = NULL;
    const Py_ssize_t rec = is64 ? 24 : 16;
    const Py_ssize_t n = data.len / rec;
    const Py_ssize_t nsec = addrs.len / 8 < sizes.len / 8 ? addrs.len / 8 : sizes.len / 8;
    const uint64_t *sec_addr = addrs.buf, *sec_size = sizes.buf;
    const uint8_t *d = data.buf;
    Names nm = {strtab.buf, strtab.len, max_bytes > 0 ? max_bytes : 1};
    Py_ssize_t kept = 0, m = 0, functions = 0;
    int undecided = 0, nomem = 0;

    if (addrs.len % 8 || sizes.len % 8 || (size_t)n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "section columns or symbol count out of range");
        goto out;
    }
    Py_BEGIN_ALLOW_THREADS
    const int info_at = is64 ? 4 : 12, shndx_at = is64 ? 6 : 14;
    for (Py_ssize_t r = 0; r < n; r++) {
        const uint8_t *p = d + r * rec;
        uint8_t type = p[info_at] & 0xF;
        uint16_t sh = rd16(p + shndx_at, little);
        functions += (type == 2 || type == 10) && sh != 0 && sh < 0xFF00;
    }
    if (functions <= max_symbols && functions > 0) {
        syms = malloc((size_t)functions * sizeof(Sym));
        if (!syms) nomem = 1;
    }
    if (functions <= max_symbols && syms) {
        for (Py_ssize_t r = 0; r < n; r++) {
            const uint8_t *p = d + r * rec;
            uint8_t info = p[info_at], type = info & 0xF;
            uint16_t sh = rd16(p + shndx_at, little);
            if (!((type == 2 || type == 10) && sh != 0 && sh < 0xFF00)) continue;
            uint32_t name = rd32(p, little);
            uint64_t value = is64 ? rd64(p + 8, little) : rd32(p + 4, little);
            uint64_t size = is64 ? rd64(p + 16, little) : rd32(p + 8, little);
            if (value == 0 || (size_t)name >= (size_t)nm.strtab_len || nm.strtab[name] == 0) continue;
            if (arm) value &= ~(uint64_t)1; /* Thumb: bit 0 set (after the address-0 test, as Python) */
            syms[kept++] = (Sym){value, size, (uint32_t)r, name, sh, (uint8_t)(info >> 4)};
        }
        qsort(syms, (size_t)kept, sizeof(Sym), by_start);
        entries = malloc((size_t)(kept ? kept : 1) * sizeof(Entry));
        if (!entries) nomem = 1;
    }
    uint16_t *win_sh = entries ? malloc((size_t)(kept ? kept : 1) * sizeof(uint16_t)) : NULL;
    if (entries && !win_sh) nomem = 1;
    if (win_sh) {
        for (Py_ssize_t i = 0; i < kept && !undecided;) {
            Py_ssize_t j = i + 1;
            while (j < kept && syms[j].start == syms[i].start) j++;
            Py_ssize_t w = 0;
            uint64_t largest = syms[i].size;
            if (j - i > 1) {
                w = best_member(syms + i, j - i, &nm);
                if (w < 0) {
                    undecided = 1;
                    break;
                }
                for (Py_ssize_t k = i; k < j; k++)
                    if (syms[k].size > largest) largest = syms[k].size;
            }
            const Sym *win = syms + i + w;
            entries[m].start = win->start;
            entries[m].end = (u128)(win->size ? win->size : largest); /* the size, for now */
            entries[m].name = win->name;
            win_sh[m] = win->shndx;
            m++;
            i = j;
        }
        for (Py_ssize_t i = 0; i < m && !undecided; i++) {
            u128 size = entries[i].end;
            if (size) {
                entries[i].end = (u128)entries[i].start + size;
                continue;
            }
            /* no size: to the next symbol's start, never past the end of its own section */
            u128 nxt = i + 1 < m ? entries[i + 1].start : 0;
            u128 limit = win_sh[i] < nsec ? (u128)sec_addr[win_sh[i]] + sec_size[win_sh[i]] : 0;
            if (nxt && limit)
                entries[i].end = nxt < limit ? nxt : limit;
            else
                entries[i].end = nxt ? nxt : limit ? limit : (u128)entries[i].start + 1;
        }
        free(win_sh);
    }
    Py_END_ALLOW_THREADS

    if (nomem) {
        PyErr_NoMemory();
    } else if (functions > max_symbols) {
        result = PyLong_FromSsize_t(functions);
    } else if (undecided) {
        result = Py_NewRef(Py_None);
    } else {
        Entry none;
        result = build_lists(entries ? entries : &none, m);
    }
out:
    free(syms);
    free(entries);
    PyBuffer_Release(&data);
    PyBuffer_Release(&strtab);
    PyBuffer_Release(&addrs);
    PyBuffer_Release(&sizes);
    return result;
}

/* ---- a batch's answers from its first range and first table (canonical/quicklookup.py) ---- */

/* v as uint64 into *out: 0 when it is not an int in [0, 2^64) (then the caller falls back). */
static int as_u64(PyObject *v, uint64_t *out) {
    if (!PyLong_Check(v)) return 0;
    int overflow = 0;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (!overflow) {
        if (s < 0) return 0;
        *out = (uint64_t)s;
        return 1;
    }
    if (overflow < 0) return 0;
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = u;
    return 1;
}

/* vaddr < end, for an end that may pass 2^64 (then every vaddr is below it). -1 on a non-int. */
static int below(uint64_t vaddr, PyObject *end) {
    uint64_t e;
    if (as_u64(end, &e)) return vaddr < e;
    if (PyLong_Check(end) && _PyLong_Sign(end) > 0) return 1;
    return -1;
}

/* AddressTable.find over lists: the entry containing vaddr, -1 for none, -2 for a bad table. */
static Py_ssize_t find_entry(PyObject *starts, PyObject *ends, uint64_t vaddr) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(starts);
    if (PyList_GET_SIZE(ends) != hi) return -2;
    while (lo < hi) { /* bisect_right */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        uint64_t v;
        if (!as_u64(PyList_GET_ITEM(starts, mid), &v)) return -2;
        if (vaddr < v)
            hi = mid;
        else
            lo = mid + 1;
    }
    Py_ssize_t i = lo - 1;
    if (i < 0) return -1;
    int b = below(vaddr, PyList_GET_ITEM(ends, i));
    if (b) return b < 0 ? -2 : i;
    for (Py_ssize_t j = i - 1; j >= 0 && j >= i - 8; j--) { /* nested: _NESTED_LOOKBACK entries back */
        b = below(vaddr, PyList_GET_ITEM(ends, j));
        if (b) return b < 0 ? -2 : j;
    }
    return -1;
}

/* The slot offsets of a Resolution (a slots dataclass), so answers are made as a copy of a template
 * with the first 8 fields set, without running its Python __init__ (the same object it would make:
 * every field, the defaults from the template). 0 when the class is not such a class. */
#define MAX_SLOTS 32
static int slot_offsets(PyObject *cls, PyObject *template, Py_ssize_t *offs, Py_ssize_t *count) {
    if (!PyType_Check(cls) || Py_TYPE(template) != (PyTypeObject *)cls) return 0;
    /* Only a dataclass whose generated __init__ does nothing but set its fields in order: a
     * __post_init__ (a check, a derived field) runs only when the class is called. */
    if (!PyObject_HasAttrString(cls, "__dataclass_fields__") || PyObject_HasAttrString(cls, "__post_init__"))
        return 0;
    PyObject *names = PyObject_GetAttrString(cls, "__slots__");
    if (!names) {
        PyErr_Clear();
        return 0;
    }
    int ok = PyTuple_Check(names) && PyTuple_GET_SIZE(names) >= 8 && PyTuple_GET_SIZE(names) <= MAX_SLOTS;
    for (Py_ssize_t j = 0; ok && j < PyTuple_GET_SIZE(names); j++) {
        PyObject *d = PyDict_GetItemWithError(((PyTypeObject *)cls)->tp_dict, PyTuple_GET_ITEM(names, j));
        ok = d && Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) {
            offs[j] = ((PyMemberDescrObject *)d)->d_member->offset;
            ok = *(PyObject **)((char *)template + offs[j]) != NULL;
        }
    }
    if (ok) *count = PyTuple_GET_SIZE(names);
    Py_DECREF(names);
    if (PyErr_Occurred()) PyErr_Clear();
    return ok;
}

static PyObject *make_answer(PyObject *cls, PyObject *template, const Py_ssize_t *offs, Py_ssize_t count,
                             PyObject **first8) {
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *obj = tp->tp_alloc(tp, 0);
    if (!obj) return NULL;
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *v = j < 8 ? first8[j] : *(PyObject **)((char *)template + offs[j]);
        *(PyObject **)((char *)obj + offs[j]) = Py_NewRef(v);
    }
    return obj;
}

static PyObject *symindex_answer_first(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *offsets, *labels, *starts, *ends, *canonical, *name_of, *cls, *path, *bid, *source, *hit, *key;
    PyObject *template;
    long long lo0, hi0, delta0;
    if (!PyArg_ParseTuple(args, "O!O!LLLO!O!O!OOUUUOOO", &PyList_Type, &offsets, &PyList_Type, &labels, &lo0,
                          &hi0, &delta0, &PyList_Type, &starts, &PyList_Type, &ends, &PyList_Type, &canonical,
                          &name_of, &cls, &path, &bid, &source, &hit, &key, &template))
        return NULL;
    Py_ssize_t offs[MAX_SLOTS], nslots = 0;
    int direct = slot_offsets(cls, template, offs, &nslots); /* else: call the class */
    Py_ssize_t n = PyList_GET_SIZE(offsets);
    if (PyList_GET_SIZE(labels) != n) {
        PyErr_SetString(PyExc_ValueError, "offsets and labels differ in length");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    const Py_ssize_t nstarts = PyList_GET_SIZE(starts), nends = PyList_GET_SIZE(ends);
    const Py_ssize_t ncanonical = PyList_GET_SIZE(canonical);
    for (Py_ssize_t k = 0; k < n; k++) {
        /* The callbacks below (name_of, the class, hit) run Python code: a list they shorten is not
         * read past (its borrowed items could be gone): the batch fails with RuntimeError instead. */
        if (PyList_GET_SIZE(offsets) != n || PyList_GET_SIZE(labels) != n ||
            PyList_GET_SIZE(starts) != nstarts || PyList_GET_SIZE(ends) != nends ||
            PyList_GET_SIZE(canonical) != ncanonical) {
            PyErr_SetString(PyExc_RuntimeError, "a list changed size during the native batch");
            goto fail;
        }
        PyObject *fo = PyList_GET_ITEM(offsets, k);
        int overflow = 0;
        long long off = PyLong_Check(fo) ? PyLong_AsLongLongAndOverflow(fo, &overflow) : 0;
        if (off == -1 && PyErr_Occurred()) goto fail;
        __int128 v = (__int128)off + delta0;
        Py_ssize_t i = -1;
        if (PyLong_Check(fo) && !overflow && lo0 <= off && off < hi0 && v >= 0 && v <= (__int128)UINT64_MAX)
            i = find_entry(starts, ends, (uint64_t)v);
        /* i == -2, a table this code cannot read (a start past 2^64): this offset alone is left to the
         * caller's loop. Never the whole batch: the answers made already have been counted (hit). */
        if (i < 0 || i >= ncanonical) {
            PyList_SET_ITEM(out, k, Py_NewRef(Py_None)); /* another range or table: the caller's loop */
            continue;
        }
        Py_INCREF(fo); /* held across the callbacks: the offsets list may drop it */
        PyObject *symbol = PyList_GET_ITEM(canonical, i);
        if (symbol == Py_None) {
            symbol = PyObject_CallFunction(name_of, "n", i);
            if (!symbol) {
                Py_DECREF(fo);
                goto fail;
            }
        } else {
            Py_INCREF(symbol);
        }
        uint64_t start;
        if (PyList_GET_SIZE(starts) != nstarts || PyList_GET_SIZE(labels) != n) {
            Py_DECREF(symbol);
            Py_DECREF(fo);
            PyErr_SetString(PyExc_RuntimeError, "a list changed size during the native batch");
            goto fail;
        }
        if (!PyUnicode_Check(symbol) || !as_u64(PyList_GET_ITEM(starts, i), &start)) {
            Py_DECREF(symbol);
            Py_DECREF(fo);
            PyErr_SetString(PyExc_TypeError, "a table entry without a str name or an int start");
            goto fail;
        }
        unsigned long long delta = (unsigned long long)((uint64_t)v - start);
        PyObject *offset = PyLong_FromUnsignedLongLong(delta);
        char hex[24]; /* hex(offset) */
        snprintf(hex, sizeof hex, "0x%llx", delta);
        PyObject *fid = offset ? PyUnicode_FromFormat("%U:%U+%s", bid, symbol, hex) : NULL;
        PyObject *res = NULL;
        if (fid) {
            PyObject *argv[8] = {PyList_GET_ITEM(labels, k), path, bid, symbol, offset, fid, source, fo};
            res = direct ? make_answer(cls, template, offs, nslots, argv) : PyObject_Vectorcall(cls, argv, 8, NULL);
        }
        Py_DECREF(symbol);
        Py_DECREF(fo);
        Py_XDECREF(offset);
        Py_XDECREF(fid);
        if (!res) goto fail;
        PyList_SET_ITEM(out, k, res);
        PyObject *r = PyObject_CallOneArg(hit, key);
        if (!r) goto fail;
        Py_DECREF(r);
    }
    return out;
fail:
    Py_DECREF(out); /* slots not set yet are NULL: list_dealloc skips them */
    return NULL;
}

static PyMethodDef methods[] = {
    {"index", symindex_index, METH_VARARGS,
     "index(data, strtab, is64, little, arm, sec_addrs, sec_sizes, max_bytes, max_symbols)\n"
     "-> (starts, ends, name_offsets) | count over max_symbols | None (rank left to Python)"},
    {"answer_first", symindex_answer_first, METH_VARARGS,
     "answer_first(offsets, labels, lo, hi, delta, starts, ends, canonical, name_of, Resolution, path,\n"
     "             build_id, source, hit, key, template) -> [Resolution | None]: QuickLookup.answer_many's\n"
     "first range and first table; None where the caller's loop must answer (one offset at a time)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_symindex", "An ELF symbol table's function index, built natively.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__symindex(void) { return PyModule_Create(&module); }
