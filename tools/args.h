/* Command-line options of the ember tool: one table per command drives both the
 * parsing and the --help text, so the help can never forget an option or its default. */
#ifndef EMBER_TOOLS_ARGS_H
#define EMBER_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of the tool. */
enum { EXIT_OK = 0, EXIT_LIBRARY_ERROR = 1, EXIT_USAGE = 2 };

typedef enum args_kind {
    ARGS_FLAG,    /* bool *target, set to true when present */
    ARGS_STRING,  /* const char **target */
    ARGS_INT,     /* int64_t *target, within [min, max] */
    ARGS_FLOAT,   /* double *target, finite, within [min, max] */
    ARGS_CHOICE   /* int *target: index into choices (NULL-terminated) */
} args_kind;

typedef struct args_option {
    const char *name;          /* "epochs" for --epochs */
    args_kind kind;
    const char *metavar;       /* "N" in "--epochs N" */
    void *target;
    const char *help;
    const char *default_text;  /* NULL: written from the target's initial value */
    double min, max;           /* numeric range, inclusive (both 0: unbounded) */
    const char *const *choices;
    bool given;                /* set by the parser */
} args_option;

typedef struct args_spec {
    const char *command;       /* "train" */
    const char *usage;         /* "MODEL [options]" */
    const char *summary;       /* one line */
    const char *details;       /* paragraphs after the usage line, or NULL */
    args_option *options;
    int n_options;
    int min_positionals, max_positionals;
    const char **positionals;  /* max_positionals slots, filled in order */
    int n_positionals;         /* set by the parser */
    const char *examples;      /* or NULL */
} args_spec;

/* Parses argv[first..argc). Returns -1 when the command should run, or an exit status:
 * EXIT_OK after printing the help for -h/--help, EXIT_USAGE after printing a message
 * that names the offending option and a hint to stderr. */
int args_parse(args_spec *spec, int argc, char **argv, int first);

void args_print_help(const args_spec *spec, FILE *out);

/* Prints "ember CMD: <message>" and a hint to stderr; returns EXIT_USAGE. */
int args_usage_error(const args_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The option named `name` in spec (without dashes), or NULL. */
const args_option *args_find(const args_spec *spec, const char *name);
bool args_given(const args_spec *spec, const char *name);

/* Levenshtein distance, for "did you mean" hints. */
int args_edit_distance(const char *a, const char *b);

#endif
