/*
 * err.h - Linkup's one error convention.
 *
 * A function that can fail returns int: 0 on success or a negative enum lk_err
 * code. Parsers return the number of bytes consumed (> 0), LK_PARTIAL when more
 * input is needed, or LK_EPARSE. lk_strerror() maps a code to a fixed message.
 */
#ifndef LK_CORE_ERR_H
#define LK_CORE_ERR_H

#define LK_ERRORS(X)                         \
    X(LK_ENOMEM, -1, "out of memory")        \
    X(LK_EINVAL, -2, "invalid argument")     \
    X(LK_EPARSE, -3, "malformed input")      \
    X(LK_ELIMIT, -4, "limit exceeded")       \
    X(LK_ENOTFOUND, -5, "not found")         \
    X(LK_EIO, -6, "i/o error")               \
    X(LK_ETIMEDOUT, -7, "timed out")         \
    X(LK_EEXIST, -8, "already exists")       \
    X(LK_ECONFLICT, -9, "conflict")          \
    X(LK_EUNSUPPORTED, -10, "not supported") \
    X(LK_PARTIAL, -11, "incomplete input")   \
    X(LK_ESTORE, -12, "store error")         \
    X(LK_ECLOSED, -13, "connection closed")  \
    X(LK_EVALIDATE, -14, "session validation failed")

enum lk_err {
#define LK_ERR_ENUM(name, value, msg) name = (value),
    LK_ERRORS(LK_ERR_ENUM)
#undef LK_ERR_ENUM
};

/* Returns the fixed message of an lk_err code; never NULL ("unknown error" for
 * codes outside the table, "success" for 0). */
const char *lk_strerror(int err);

#endif
