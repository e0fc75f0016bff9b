#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int args_usage_error(const args_spec *spec, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ember %s: ", spec->command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ember %s --help' for the list of options.\n", spec->command);
    return EXIT_USAGE;
}

int args_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diagonal = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int above = row[j];
            int best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

const args_option *args_find(const args_spec *spec, const char *name)
{
    for (int i = 0; i < spec->n_options; i++)
        if (strcmp(spec->options[i].name, name) == 0)
            return &spec->options[i];
    return NULL;
}

bool args_given(const args_spec *spec, const char *name)
{
    const args_option *o = args_find(spec, name);
    return o && o->given;
}

static const char *closest_option(const args_spec *spec, const char *name)
{
    const char *best = NULL;
    int best_distance = 3; /* further than two edits is not a typo */
    for (int i = 0; i < spec->n_options; i++) {
        int d = args_edit_distance(name, spec->options[i].name);
        if (d < best_distance) {
            best_distance = d;
            best = spec->options[i].name;
        }
    }
    return best;
}

static bool has_range(const args_option *o) { return o->min != 0 || o->max != 0; }

static void format_number(char *buf, size_t size, double v, bool integer)
{
    if (integer)
        snprintf(buf, size, "%lld", (long long)v);
    else
        snprintf(buf, size, "%g", v);
}

static int out_of_range(const args_spec *spec, const args_option *o, const char *text)
{
    /* An upper bound near the int64 limit only stands for "no upper bound". */
    if (o->max >= 9e18) {
        char lo_only[32];
        format_number(lo_only, sizeof lo_only, o->min, o->kind == ARGS_INT);
        return args_usage_error(spec, "--%s must be at least %s, got '%s'", o->name, lo_only, text);
    }
    char lo[32], hi[32];
    format_number(lo, sizeof lo, o->min, o->kind == ARGS_INT);
    format_number(hi, sizeof hi, o->max, o->kind == ARGS_INT);
    return args_usage_error(spec, "--%s must be between %s and %s, got '%s'", o->name, lo, hi,
                            text);
}

static int set_value(const args_spec *spec, args_option *o, const char *text)
{
    switch (o->kind) {
    case ARGS_FLAG:
        *(bool *)o->target = true;
        return -1;
    case ARGS_STRING:
        if (text[0] == '\0')
            return args_usage_error(spec, "--%s needs a non-empty %s", o->name, o->metavar);
        *(const char **)o->target = text;
        return -1;
    case ARGS_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (end == text || *end != '\0')
            return args_usage_error(spec, "--%s expects an integer %s, got '%s'", o->name,
                                    o->metavar, text);
        if (errno == ERANGE)
            return args_usage_error(spec, "--%s: '%s' does not fit in 64 bits", o->name, text);
        if (has_range(o) && ((double)v < o->min || (double)v > o->max))
            return out_of_range(spec, o, text);
        *(int64_t *)o->target = (int64_t)v;
        return -1;
    }
    case ARGS_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (end == text || *end != '\0')
            return args_usage_error(spec, "--%s expects a number %s, got '%s'", o->name,
                                    o->metavar, text);
        if (!isfinite(v))
            return args_usage_error(spec, "--%s must be a finite number, got '%s'", o->name,
                                    text);
        if (errno == ERANGE || (has_range(o) && (v < o->min || v > o->max)))
            return out_of_range(spec, o, text);
        *(double *)o->target = v;
        return -1;
    }
    case ARGS_CHOICE:
        for (int i = 0; o->choices[i]; i++) {
            if (strcmp(o->choices[i], text) == 0) {
                *(int *)o->target = i;
                return -1;
            }
        }
        {
            char list[256] = "";
            for (int i = 0; o->choices[i]; i++) {
                if (i)
                    strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, o->choices[i], sizeof list - strlen(list) - 1);
            }
            return args_usage_error(spec, "--%s must be one of %s, got '%s'", o->name, list,
                                    text);
        }
    }
    return -1;
}

int args_parse(args_spec *spec, int argc, char **argv, int first)
{
    bool options_done = false;
    spec->n_positionals = 0;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (spec->n_positionals >= spec->max_positionals) {
                if (spec->max_positionals == 0)
                    return args_usage_error(spec, "unexpected argument '%s'", arg);
                return args_usage_error(spec, "unexpected extra argument '%s'", arg);
            }
            spec->positionals[spec->n_positionals++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            args_print_help(spec, stdout);
            return EXIT_OK;
        }
        if (arg[1] != '-')
            return args_usage_error(spec, "unknown option '%s' (options are spelled --name)", arg);

        /* --name value or --name=value */
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        char name_buf[64];
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        if (name_len >= sizeof name_buf)
            return args_usage_error(spec, "unknown option '%s'", arg);
        memcpy(name_buf, name, name_len);
        name_buf[name_len] = '\0';

        args_option *o = NULL;
        for (int k = 0; k < spec->n_options; k++)
            if (strcmp(spec->options[k].name, name_buf) == 0)
                o = &spec->options[k];
        if (!o) {
            const char *guess = closest_option(spec, name_buf);
            if (guess)
                return args_usage_error(spec, "unknown option '--%s' (did you mean --%s?)",
                                        name_buf, guess);
            return args_usage_error(spec, "unknown option '--%s'", name_buf);
        }
        if (o->given && o->kind != ARGS_FLAG)
            return args_usage_error(spec, "--%s given twice", o->name);
        o->given = true;

        const char *value = NULL;
        if (o->kind == ARGS_FLAG) {
            if (eq)
                return args_usage_error(spec, "--%s takes no value", o->name);
        } else if (eq) {
            value = eq + 1;
        } else {
            /* A following "--x" is the next option, not a value; "-1" may be a value. */
            if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
                return args_usage_error(spec, "--%s needs a value (%s)", o->name, o->metavar);
            value = argv[++i];
        }
        int status = set_value(spec, o, value);
        if (status >= 0)
            return status;
    }
    if (spec->n_positionals < spec->min_positionals)
        return args_usage_error(spec, "missing argument: usage is 'ember %s %s'", spec->command,
                                spec->usage);
    return -1;
}

static void default_text(const args_option *o, char *buf, size_t size)
{
    if (o->default_text) {
        snprintf(buf, size, "%s", o->default_text);
        return;
    }
    switch (o->kind) {
    case ARGS_FLAG:
        snprintf(buf, size, "%s", *(const bool *)o->target ? "on" : "off");
        break;
    case ARGS_STRING: {
        const char *s = *(const char *const *)o->target;
        snprintf(buf, size, "%s", s ? s : "none");
        break;
    }
    case ARGS_INT:
        snprintf(buf, size, "%lld", (long long)*(const int64_t *)o->target);
        break;
    case ARGS_FLOAT:
        snprintf(buf, size, "%g", *(const double *)o->target);
        break;
    case ARGS_CHOICE:
        snprintf(buf, size, "%s", o->choices[*(const int *)o->target]);
        break;
    }
}

/* Writes text from column `indent` on, breaking lines between words before column 80,
 * then `tail` unbroken (on the next line if it does not fit). */
static void print_wrapped(FILE *out, const char *text, const char *tail, int column, int indent)
{
    const int width = 80;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t word = strcspn(p, " ");
        if (word == 0)
            break;
        if (column > indent && column + 1 + (int)word > width) {
            fprintf(out, "\n%*s", indent, "");
            column = indent;
        } else if (column > indent) {
            fputc(' ', out);
            column++;
        }
        fwrite(p, 1, word, out);
        column += (int)word;
        p += word;
    }
    if (column + 1 + (int)strlen(tail) > width)
        fprintf(out, "\n%*s%s\n", indent, "", tail);
    else
        fprintf(out, " %s\n", tail);
}

void args_print_help(const args_spec *spec, FILE *out)
{
    enum { HELP_COLUMN = 26 };
    fprintf(out, "Usage: ember %s %s\n\n%s\n", spec->command, spec->usage, spec->summary);
    if (spec->details)
        fprintf(out, "\n%s", spec->details);
    fprintf(out, "\nOptions:\n");
    for (int i = 0; i < spec->n_options; i++) {
        const args_option *o = &spec->options[i];
        char left[64], def[96], tail[128];
        if (o->kind == ARGS_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar);
        default_text(o, def, sizeof def);
        if (strcmp(def, "required") == 0)
            snprintf(tail, sizeof tail, "(required)");
        else
            snprintf(tail, sizeof tail, "(default: %s)", def);
        int column = fprintf(out, "  %s", left);
        if (column + 2 > HELP_COLUMN) {
            fprintf(out, "\n%*s", HELP_COLUMN, "");
        } else {
            fprintf(out, "%*s", HELP_COLUMN - column, "");
        }
        print_wrapped(out, o->help, tail, HELP_COLUMN, HELP_COLUMN);
    }
    fprintf(out, "  %-*s%s\n", HELP_COLUMN - 2, "-h, --help", "print this help and exit");
    if (spec->examples)
        fprintf(out, "\nExamples:\n%s", spec->examples);
}
