/* Parameter groups: which tensors a group takes (shell patterns over PyTorch-style
 * names, a dimension limit) and the options its tensors are updated with. The text
 * form "PATTERN:lr=X,wd=Y;..." is what the command line passes. */
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

/* Longest single alternative of a pattern; longer ones never match. */
#define MAX_ALTERNATIVE 256

static bool pattern_matches(const char *pattern, const char *name)
{
    if (!pattern || !pattern[0])
        return true;
    const char *p = pattern;
    for (;;) {
        size_t len = strcspn(p, "|");
        if (len > 0 && len < MAX_ALTERNATIVE) {
            char one[MAX_ALTERNATIVE];
            memcpy(one, p, len);
            one[len] = '\0';
            if (fnmatch(one, name, 0) == 0)
                return true;
        }
        if (p[len] == '\0')
            return false;
        p += len + 1;
    }
}

bool em_param_group_matches(const em_param_group *g, const em_tensor *t)
{
    if (g->max_ndim > 0 && t->ndim > g->max_ndim)
        return false;
    return pattern_matches(g->pattern, t->name ? t->name : "");
}

em_optim_opts em_param_group_opts(const em_param_group *g, const em_optim_opts *base)
{
    em_optim_opts o = *base;
    if (g->set_lr)
        o.lr = g->lr;
    if (g->set_weight_decay)
        o.weight_decay = g->weight_decay;
    return o;
}

static int parse_value(const char *group_text, const char *key, const char *text, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v) || errno == ERANGE)
        return em_error("parameter group \"%s\": %s must be a finite number, got \"%s\"", group_text, key, text);
    if (v < 0)
        return em_error("parameter group \"%s\": %s must be >= 0, got %s", group_text, key, text);
    *out = (float)v;
    return EM_OK;
}

/* "lr=0.1,wd=0" into g. */
static int parse_settings(const char *group_text, char *settings, em_param_group *g)
{
    if (!settings[0])
        return em_error("parameter group \"%s\": nothing after ':' (expected lr=X and/or wd=Y)", group_text);
    char *item = settings;
    for (;;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        char *eq = strchr(item, '=');
        if (!eq)
            return em_error("parameter group \"%s\": expected KEY=VALUE, got \"%s\" (keys: lr, wd)", group_text,
                            item);
        *eq = '\0';
        const char *key = item, *value = eq + 1;
        if (strcmp(key, "lr") == 0) {
            if (parse_value(group_text, "lr", value, &g->lr) != EM_OK)
                return EM_ERR;
            g->set_lr = true;
        } else if (strcmp(key, "wd") == 0 || strcmp(key, "weight_decay") == 0) {
            if (parse_value(group_text, "wd", value, &g->weight_decay) != EM_OK)
                return EM_ERR;
            g->set_weight_decay = true;
        } else {
            return em_error("parameter group \"%s\": unknown key \"%s\" (keys: lr, wd)", group_text, key);
        }
        if (!comma)
            return EM_OK;
        item = comma + 1;
    }
}

int em_param_groups_parse(char *spec, em_param_group *groups, int cap)
{
    if (!spec || !groups || cap < 0) {
        em_error("em_param_groups_parse: no text or no room for groups");
        return -1;
    }
    int n = 0;
    char *part = spec;
    while (part) {
        char *semi = strchr(part, ';');
        if (semi)
            *semi = '\0';
        if (part[0]) {
            char text[160];
            snprintf(text, sizeof text, "%s", part);
            char *colon = strrchr(part, ':');
            if (!colon || colon == part) {
                em_error("parameter group \"%s\": expected PATTERN:lr=X,wd=Y", text);
                return -1;
            }
            if (n >= cap) {
                em_error("at most %d parameter groups, got more (at \"%s\")", cap, text);
                return -1;
            }
            *colon = '\0';
            em_param_group g;
            memset(&g, 0, sizeof g);
            g.pattern = part;
            if (parse_settings(text, colon + 1, &g) != EM_OK)
                return -1;
            groups[n++] = g;
        }
        part = semi ? semi + 1 : NULL;
    }
    return n;
}
