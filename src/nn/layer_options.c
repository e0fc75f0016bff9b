/* Reading a layer's options from the words of its description line: each option can
 * be given by position or by name, and is checked for form and range here so that
 * every kind reports bad values the same way. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

void em_text_append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strnlen(buf, size);
    if (used + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

void em_text_append_float(char *buf, size_t size, float v)
{
    char text[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v)
            break;
    }
    em_text_append(buf, size, "%s", text);
}

/* The canonical name: the first alias of "a|b". */
static const char *canonical(const char *key, char *buf, size_t size)
{
    size_t n = strcspn(key, "|");
    if (n >= size)
        n = size - 1;
    memcpy(buf, key, n);
    buf[n] = '\0';
    return buf;
}

static bool key_matches(const char *aliases, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = aliases; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && strncmp(p, key, n) == 0)
            return true;
        p += n;
        if (*p == '|')
            p++;
    }
    return false;
}

static const char *kind_name(const em_layer_options *o) { return o->kind ? o->kind->name : "layer"; }

/* Finds the option; 1 and *value when found, 0 when absent, EM_ERR when given twice. */
static int find_option(em_layer_options *o, int position, const char *key, const char **value)
{
    em_layer_option *found = NULL;
    int seen_positional = 0;
    char name[64];
    for (int i = 0; i < o->count; i++) {
        em_layer_option *it = &o->item[i];
        bool match = it->key ? key_matches(key, it->key) : (position >= 0 && seen_positional == position);
        if (!it->key)
            seen_positional++;
        if (!match)
            continue;
        if (found)
            return em_error("%s: option %s is given twice ('%s' and '%s')", kind_name(o),
                            canonical(key, name, sizeof name), found->value, it->value);
        found = it;
    }
    if (!found)
        return 0;
    found->used = true;
    *value = found->value;
    return 1;
}

int em_option_int(em_layer_options *o, int position, const char *key, int64_t min, int64_t max,
                  int64_t *out)
{
    const char *text;
    int r = find_option(o, position, key, &text);
    if (r != 1)
        return r;
    char name[64];
    canonical(key, name, sizeof name);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0')
        return em_error("%s: %s must be an integer, got '%s'", kind_name(o), name, text);
    if (v < min)
        return em_error("%s: %s must be at least %" PRId64 ", got %s", kind_name(o), name, min, text);
    if (errno == ERANGE || v > max)
        return em_error("%s: %s must be at most %" PRId64 ", got %s", kind_name(o), name, max, text);
    *out = (int64_t)v;
    return 1;
}

int em_option_float(em_layer_options *o, int position, const char *key, double min, double max,
                    float *out)
{
    const char *text;
    int r = find_option(o, position, key, &text);
    if (r != 1)
        return r;
    char name[64];
    canonical(key, name, sizeof name);
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v))
        return em_error("%s: %s must be a finite number, got '%s'", kind_name(o), name, text);
    if (v < min || v > max)
        return em_error("%s: %s must be in [%g, %g], got %s", kind_name(o), name, min, max, text);
    *out = (float)v;
    return 1;
}

int em_option_pair(em_layer_options *o, int position, const char *key, int64_t min, int64_t max,
                   int64_t out[2])
{
    const char *text;
    int r = find_option(o, position, key, &text);
    if (r != 1)
        return r;
    char name[64];
    canonical(key, name, sizeof name);
    int64_t v[2];
    const char *p = text;
    for (int i = 0; i < 2; i++) {
        char *end;
        errno = 0;
        long long n = strtoll(p, &end, 10);
        bool last = *end == '\0';
        if (end == p || !(last || (i == 0 && *end == 'x')) || *p == '+' || *p == ' ')
            return em_error("%s: %s must be an integer N or a pair HxW, got '%s'", kind_name(o), name, text);
        if (n < min)
            return em_error("%s: %s must be at least %" PRId64 ", got %s", kind_name(o), name, min, text);
        if (errno == ERANGE || n > max)
            return em_error("%s: %s must be at most %" PRId64 ", got %s", kind_name(o), name, max, text);
        v[i] = (int64_t)n;
        if (last) {
            if (i == 0)
                v[1] = v[0];
            break;
        }
        p = end + 1;
    }
    out[0] = v[0];
    out[1] = v[1];
    return 1;
}

int em_option_bool(em_layer_options *o, int position, const char *key, bool *out)
{
    const char *text;
    int r = find_option(o, position, key, &text);
    if (r != 1)
        return r;
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(text, yes[i]) == 0) {
            *out = true;
            return 1;
        }
        if (strcmp(text, no[i]) == 0) {
            *out = false;
            return 1;
        }
    }
    char name[64];
    return em_error("%s: %s must be true or false, got '%s'", kind_name(o), canonical(key, name, sizeof name),
                    text);
}

int em_option_word(em_layer_options *o, int position, const char *key, const char **out)
{
    return find_option(o, position, key, out);
}

int em_option_missing(const em_layer_options *o, const char *key)
{
    char name[64];
    return em_error("%s: missing %s (usage: %s)", kind_name(o), canonical(key, name, sizeof name),
                    o->kind ? o->kind->usage : "?");
}

int em_options_check_used(const em_layer_options *o)
{
    for (int i = 0; i < o->count; i++) {
        const em_layer_option *it = &o->item[i];
        if (it->used)
            continue;
        const char *usage = o->kind ? o->kind->usage : "?";
        if (it->key)
            return em_error("%s: unknown option '%s=%s' (usage: %s)", kind_name(o), it->key, it->value,
                            usage);
        return em_error("%s: unexpected value '%s' (usage: %s)", kind_name(o), it->value, usage);
    }
    return EM_OK;
}
