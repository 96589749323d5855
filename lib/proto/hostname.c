/*
 * hostname.c - DNS name syntax (see hostname.h).
 */
#include "proto/hostname.h"

static bool is_label_char(char c, unsigned flags)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           (c == '_' && (flags & LK_HOSTNAME_UNDERSCORE) != 0);
}

bool lk_hostname_valid(const char *s, size_t len, unsigned flags)
{
    if (len == 0 || len > LK_HOSTNAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!is_label_char(s[i], flags) || ++label > LK_HOSTNAME_LABEL_MAX) {
            return false;
        }
    }
    return label > 0;
}
