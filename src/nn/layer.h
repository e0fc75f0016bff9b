/* Internal: the contract between a model and its layer kinds.
 *
 * A layer kind (linear, relu, conv2d, ...) is one file that defines one const
 * em_layer_kind and one entry in the table of src/nn/registry.c. The model owns the
 * order of layers, the numbering of parameter names, shape inference across layers,
 * fusion and the description text; a kind only knows its own options, shapes,
 * parameters and forward pass.
 *
 * Life of a layer: the kind's options arrive either from a description line (parse
 * fills the kind's config struct from em_layer_options) or from a C function that
 * fills the same struct itself; em_model_add_layer then copies the config into the
 * model arena, calls infer (checks the config and the input shape), create (makes
 * parameters with PyTorch's default initialisation) and, for an activation that
 * follows a layer able to absorb it, marks it fused. */
#ifndef EMBER_NN_LAYER_H
#define EMBER_NN_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember/cnn_ops.h"
#include "ember/nn.h"

/* The shape of one example (no batch dimension). */
typedef struct em_shape {
    int ndim;
    int64_t dim[EM_MAX_DIMS];
} em_shape;

/* The words of a description line after the kind name: positional values ("128") and
 * key=value pairs ("bias=false"), in line order. `used` marks what a kind consumed, so
 * that anything left over is reported instead of silently ignored. */
#define EM_LAYER_MAX_OPTIONS 16

typedef struct em_layer_option {
    const char *key;   /* NULL for a positional value */
    const char *value;
    bool used;
} em_layer_option;

typedef struct em_layer_kind em_layer_kind;

/* The state a layer carries between forwards (src/nn/model_carry.c): up to two stacked
 * tensors of PyTorch's h_n layout [rows, batch, width] (an LSTM's h and c, rows being
 * its layers), held in the model arena and reallocated only when the batch grows. */
#define EM_CARRY_MAX_TENSORS 2

typedef struct em_layer_carry {
    int count;                                /* tensors: 1 (h) or 2 (h, c) */
    const char *names[EM_CARRY_MAX_TENSORS];  /* "h", "c": the C API's "<index>.h" */
    int64_t rows, width;                      /* per sequence */
    int64_t batch;                            /* sequences stored (0: none yet) */
    int64_t capacity;                         /* floats allocated per tensor */
    float *data[EM_CARRY_MAX_TENSORS];
    bool carry;                               /* every forward continues the last one */
    bool from_stored;                         /* the next forward starts from data */
} em_layer_carry;

typedef struct em_layer_options {
    const em_layer_kind *kind; /* for messages */
    int count;
    em_layer_option item[EM_LAYER_MAX_OPTIONS];
} em_layer_options;

typedef struct em_layer {
    const em_layer_kind *kind;
    em_model *model;
    int index;         /* nn.Sequential child number: the prefix of parameter names */
    em_shape in, out;  /* per example */
    void *config;      /* kind->config_size bytes in the model arena */
    int64_t param_count;
    bool fused;        /* computed by another layer's forward; skipped at run time */
    int fused_into;    /* ... that layer's index */
} em_layer;

struct em_layer_kind {
    const char *name;   /* the word on a description line */
    const char *usage;  /* "linear OUT_FEATURES [bias=true|false]", shown in errors */
    size_t config_size; /* the kind's own struct: options, then its tensors */
    int variant;        /* a constant for kinds sharing code (the em_activation of relu) */
    /* A kind that is a whole model in one line (gpt) names its tensors as the checkpoint
     * format it follows does ("wte.weight"), without the "<index>." prefix. */
    bool bare_names;

    /* Fills a zeroed config from a description line. Options a kind does not read are
     * reported by the caller. Errors carry no location (the caller adds file:line). */
    int (*parse)(const em_layer_kind *kind, void *config, em_layer_options *opts);
    /* Checks the config (positive sizes...) and the input shape and sets the output
     * shape; the message says what input the layer expected and, if there is one, the
     * usual fix ("add a 'flatten' line before it"). */
    int (*infer)(em_layer *l, const em_shape *in, em_shape *out);
    /* Makes parameters and buffers with em_layer_param / em_layer_buffer, initialised
     * from rng in PyTorch's order (weight, then bias). Creation order is state_dict
     * order: parameters first, then buffers, as a PyTorch module lists them. NULL for
     * parameter-free kinds. rng is NULL when the values are about to be loaded: the
     * em_init_* functions then leave them, and nothing else may draw from it. */
    int (*create)(em_layer *l, em_rng *rng);
    /* x: [N, in...] -> [N, out...]. training: dropout active, batch statistics. */
    em_tensor *(*forward)(em_layer *l, em_tensor *x, bool training);
    /* Writes the options of the layer's description line ("512 bias=false"), such that
     * parsing them gives the same config; NULL when a kind has no options. */
    void (*describe)(const em_layer *l, char *buf, size_t size);

    /* ---- optional hooks (NULL when not applicable) ---- */
    /* An activation layer tells which activation it applies. */
    bool (*activation_of)(const em_layer *l, em_activation *act, float *param);
    /* A layer that can apply an activation in its own output pass (linear, conv) takes
     * it over and returns true; the activation layer is then skipped at run time. */
    bool (*absorb_activation)(em_layer *l, em_activation act, float param);
    /* A layer that can do the previous layer's work in its own forward (a recurrent
     * layer its embedding: the lookup folded into the input projection) takes it over
     * and returns true; the previous layer is then skipped at run time, and this
     * layer's forward gets that layer's input. */
    bool (*absorb_previous)(em_layer *l, em_layer *prev);
    /* A layer that can also do the work of the layer after it (a convolution its max
     * pooling, in the same pass over its output): true for such a next layer;
     * forward_with_next then returns the next layer's output. */
    bool (*runs_next)(const em_layer *l, const em_layer *next);
    em_tensor *(*forward_with_next)(em_layer *l, em_layer *next, em_tensor *x);
    /* Fills a random input batch for a model starting with this layer when plain
     * N(0,1) values would be wrong (token ids for an embedding). */
    void (*example_input)(const em_layer *l, em_tensor *x, em_rng *rng);
    /* A first layer that takes token ids (embedding): the size of its vocabulary. Its
     * examples are sequences of ids whose length may differ from the nominal one of
     * the 'input' line (src/nn/model_tokens.c). */
    int64_t (*token_vocab)(const em_layer *l);
    /* A layer whose forward can start from where the previous one ended (recurrent
     * hidden states): its carried state, which src/nn/model_carry.c manages. */
    em_layer_carry *(*carry)(em_layer *l);
};

/* ---- the registry (src/nn/registry.c) --------------------------------------------- */
const em_layer_kind *em_layer_kind_find(const char *name);
int em_layer_kind_count(void);
const em_layer_kind *em_layer_kind_at(int i);
/* "linear, relu, ..." into buf. */
void em_layer_kind_list(char *buf, size_t size);

/* ---- used by kinds ----------------------------------------------------------------- */
/* Appends a layer built from `config` (kind->config_size bytes, copied). On error the
 * model is unchanged and the message names the layer ("layer 3 (linear): ..."). */
int em_model_add_layer(em_model *m, const em_layer_kind *kind, const void *config);
/* A trainable parameter named "<index>.<name>" in the model arena, zero-filled,
 * appended to the model's state in creation order (= PyTorch's state_dict order). */
em_tensor *em_layer_param(em_layer *l, const char *name, int ndim, const int64_t *shape);
/* Same for a buffer (saved, never trained). */
em_tensor *em_layer_buffer(em_layer *l, const char *name, int ndim, const int64_t *shape);

/* ---- model internals shared by the files of src/nn --------------------------------- */
int em_model_layer_count(const em_model *m);
em_layer *em_model_layer_at(const em_model *m, int i);
const em_shape *em_model_input(const em_model *m);
/* Replaces the description text (a copy is kept). */
int em_model_set_description(em_model *m, const char *text);
/* While set, layers added to m leave their parameters at zero instead of drawing them
 * (the model's generator is not advanced either). */
void em_model_skip_init(em_model *m, bool skip);
/* em_model_parse for a model whose every parameter and buffer is about to be
 * overwritten (a strict load of a checkpoint): no initialisation, which for a small
 * network is most of the work of starting up. Layers added later are initialised. */
em_model *em_model_parse_uninitialised(const char *text, const char *source);
/* The canonical description of the layers (src/nn/model_text.c); malloc'd. */
char *em_model_generate_description(const em_model *m);

/* Reading options (src/nn/layer_options.c). Each looks for the option as the
 * `position`-th positional value (0-based; -1: only by key) or as key=value; `key`
 * may list aliases separated by '|' ("slope|negative_slope"; the first is the
 * canonical name used in messages). Returns 1 when found and valid, 0 when absent
 * (out untouched), EM_ERR with a message naming the option when malformed, out of
 * [min, max] or given twice. */
int em_option_int(em_layer_options *o, int position, const char *key, int64_t min, int64_t max,
                  int64_t *out);
int em_option_float(em_layer_options *o, int position, const char *key, double min, double max,
                    float *out);
/* A size given as N (both dimensions) or HxW ("3" or "3x5"): out[0] height, out[1] width. */
int em_option_pair(em_layer_options *o, int position, const char *key, int64_t min, int64_t max,
                   int64_t out[2]);
int em_option_bool(em_layer_options *o, int position, const char *key, bool *out);
int em_option_word(em_layer_options *o, int position, const char *key, const char **out);
/* EM_ERR naming the required option and the kind's usage. */
int em_option_missing(const em_layer_options *o, const char *key);
/* EM_ERR naming the first option nobody read. */
int em_options_check_used(const em_layer_options *o);

/* Carried state, for a layer's forward over `batch` sequences (src/nn/model_carry.c).
 * em_carry_begin returns 1 when the forward starts from the stored state, 0 when from
 * zeros, EM_ERR when the stored state is for another batch size or memory runs out;
 * em_carry_initial is row `row` of tensor `i` as a step-arena copy [batch, width] (the
 * stored data changes before backward reads its inputs), NULL when starting from zeros;
 * em_carry_store keeps a final state's values (detached); em_carry_end closes the
 * forward. */
int em_carry_begin(em_layer *l, em_layer_carry *c, int64_t batch);
em_tensor *em_carry_initial(const em_layer_carry *c, int i, int64_t row);
void em_carry_store(em_layer_carry *c, int i, int64_t row, const em_tensor *final_state);
void em_carry_end(em_layer_carry *c);

/* Appends printf-style text to buf (always terminated, truncating). */
void em_text_append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends the shortest decimal form of v that reads back as v ("0.001", not "0.00100000005"). */
void em_text_append_float(char *buf, size_t size, float v);

/* A max pooling layer's window (src/nn/pool2d.c); false for any other layer. */
bool em_layer_maxpool_window(const em_layer *l, em_pool2d_args *window);

#endif
