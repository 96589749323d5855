/*
 * header.h - a header field as a pair of borrowed byte ranges.
 *
 * The core routing functions take request headers as an array of these, in
 * arrival order; the HTTP layer's parsed headers map onto it one to one.
 */
#ifndef LK_CORE_HEADER_H
#define LK_CORE_HEADER_H

#include "core/str.h"

struct lk_header {
    struct lk_str name;  /* borrowed */
    struct lk_str value; /* borrowed */
};

#endif
