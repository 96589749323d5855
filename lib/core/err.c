/*
 * err.c - messages for enum lk_err.
 */
#include "core/err.h"

const char *lk_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define LK_ERR_CASE(name, value, msg) \
    case name:                        \
        return msg;
        LK_ERRORS(LK_ERR_CASE)
#undef LK_ERR_CASE
    default:
        return "unknown error";
    }
}
