/* _kallsyms.h: the functions _kallsyms_table.c gives the _kallsyms extension's method table. */
#ifndef STELLAOPS_KALLSYMS_H
#define STELLAOPS_KALLSYMS_H
#include <Python.h>

PyObject *kallsyms_blocks(PyObject *self, PyObject *args);
PyObject *kallsyms_name_index(PyObject *self, PyObject *args);
PyObject *kallsyms_entries(PyObject *self, PyObject *args);

#endif
