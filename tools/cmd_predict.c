/* ember predict: classifies image files with trained weights. Each image is decoded
 * (PNG, PGM, PPM), turned grey or RGB as the model's input wants, stretched to its size
 * and scaled to [0, 1]; the model runs in evaluation mode and the most probable classes
 * are printed, one line per image. A file that cannot be decoded is reported and
 * skipped, and the exit status is then 1. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli_common.h"
#include "commands.h"
#include "ember.h"
#include "ember/image.h"

/* Images per forward pass: bounds the memory whatever the number of files. */
#define CHUNK 256
#define MAX_CLASSES 4096
/* Fewer images than this run on one thread unless --threads says otherwise. */
#define SMALL_BATCH 32
#define SMALL_BATCH_TEXT "32"

static const char predict_details[] =
    "MODEL is a model description file; it may be left out when the checkpoint was\n"
    "written by ember (the description travels in its metadata). The first argument is\n"
    "taken as MODEL when its name ends in .ember or it reads like a description.\n"
    "Images: PNG, PGM or PPM (P2, P5, P3, P6), any size: each is stretched to the\n"
    "model's input (averaging where it shrinks, bilinear where it grows), converted to\n"
    "grey with the ITU-R BT.601 luma for a one-channel model, and scaled to [0, 1].\n"
    "Transparent PNG pixels count as white. Fashion-MNIST pictures are light objects on\n"
    "black: use --invert for dark objects on a light background.\n"
    "Each image gives one line: FILE: CLASS PROBABILITY, ... with the --top most\n"
    "probable classes. An image that cannot be decoded is reported and skipped (exit\n"
    "status 1).\n";

static const char predict_examples[] =
    "  ember predict --weights cnn.safetensors shirt.png boot.pgm\n"
    "  ember predict models/cnn.ember --weights cnn.safetensors --top 1 --invert photo.png\n"
    "  ember predict --weights digits.safetensors --classes mnist seven.pgm\n";

/* Whether a path names a model description rather than an image: its name ends in
 * .ember, or its first word (after blank and comment lines) is "input". */
static bool looks_like_description(const char *path)
{
    size_t len = strlen(path);
    if (len > 6 && strcmp(path + len - 6, ".ember") == 0)
        return true;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char text[1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = text;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (*p != '#')
            break;
        p += strcspn(p, "\n");
    }
    return strncmp(p, "input", 5) == 0 && (p[5] == ' ' || p[5] == '\t');
}

typedef struct input_layout {
    int channels;
    int64_t height, width;
} input_layout;

/* How an image becomes the model's input: [C, H, W] with C 1 or 3, [H, W], or [N]
 * with N a square number of grey pixels. */
static int image_layout(const em_model *m, const char *model_name, input_layout *layout)
{
    int64_t shape[EM_MAX_DIMS];
    int ndim = em_model_input_shape(m, shape);
    if (ndim == 3 && (shape[0] == 1 || shape[0] == 3)) {
        *layout = (input_layout){(int)shape[0], shape[1], shape[2]};
        return EM_OK;
    }
    if (ndim == 2) {
        *layout = (input_layout){1, shape[0], shape[1]};
        return EM_OK;
    }
    if (ndim == 1) {
        int64_t side = (int64_t)llround(sqrt((double)shape[0]));
        if (side * side == shape[0]) {
            *layout = (input_layout){1, side, side};
            return EM_OK;
        }
    }
    return em_error("model %s takes inputs of shape %s, which is not an image: predict needs CxHxW with 1 "
                    "(grey) or 3 (RGB) channels, HxW, or a square number of grey pixels",
                    model_name, em_dims_str(ndim, shape));
}

/* Splits "a,b,c" into names (pointers into `list`, which is modified). */
static int split_names(char *list, const char **names, int max)
{
    int n = 0;
    for (char *p = list; n < max;) {
        names[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

typedef struct class_labels {
    const char *const *names; /* NULL: print class numbers */
    int count;
} class_labels;

static void print_prediction(const char *path, const float *probs, int64_t classes, int top,
                             const class_labels *labels)
{
    int order[MAX_CLASSES];
    for (int i = 0; i < classes; i++)
        order[i] = i;
    /* partial selection sort: the top entries, ties to the lower class number */
    printf("%s:", path);
    for (int k = 0; k < top; k++) {
        int best = k;
        for (int i = k + 1; i < classes; i++)
            if (probs[order[i]] > probs[order[best]])
                best = i;
        int tmp = order[k];
        order[k] = order[best];
        order[best] = tmp;
        int c = order[k];
        if (labels->names)
            printf("%s %s %.4f", k ? "," : "", labels->names[c], (double)probs[c]);
        else
            printf("%s class %d %.4f", k ? "," : "", c, (double)probs[c]);
    }
    printf("\n");
}

/* Runs one chunk of decoded images through the model and prints their lines. */
static int classify(em_model *m, const input_layout *layout, bool invert, em_image **images, const char **paths,
                    int n, int top, const class_labels *labels)
{
    int64_t shape[EM_MAX_DIMS + 1];
    shape[0] = n;
    int ndim = em_model_input_shape(m, shape + 1);
    em_tensor *x = em_tensor_empty(NULL, ndim + 1, shape);
    if (!x)
        return EM_ERR;
    const int64_t per_image = x->numel / n;
    for (int i = 0; i < n; i++)
        if (em_image_to_input(images[i], layout->channels, layout->height, layout->width, invert,
                              x->data + i * per_image) != EM_OK)
            return em_error_prefix("%s: ", paths[i]);
    em_tensor *probs = em_softmax(em_forward(m, x), 1);
    if (!probs)
        return EM_ERR;
    probs = em_contiguous(probs);
    if (!probs)
        return EM_ERR;
    for (int i = 0; i < n; i++)
        print_prediction(paths[i], probs->data + i * probs->shape[1], probs->shape[1], top, labels);
    return EM_OK;
}

int cmd_predict_main(int argc, char **argv, int first)
{
    const char *weights_path = NULL;
    const char *classes_spec = NULL;
    int64_t top = 3, threads = 0;
    bool invert = false;

    args_option options[] = {
        {"weights", ARGS_STRING, "FILE", &weights_path, "safetensors checkpoint with the trained weights",
         "required", 0, 0, NULL, false},
        {"top", ARGS_INT, "K", &top, "classes printed per image, most probable first", NULL, 1, MAX_CLASSES,
         NULL, false},
        {"classes", ARGS_STRING, "NAMES", &classes_spec,
         "class names: fashion-mnist, mnist, a comma-separated list, or 'index' for numbers",
         "fashion-mnist when the model has 10 outputs, else numbers", 0, 0, NULL, false},
        {"invert", ARGS_FLAG, NULL, &invert, "use 1 - v: for dark objects on a light background", NULL, 0, 0, NULL,
         false},
        {"threads", ARGS_INT, "T", &threads, "worker threads",
         "0: one per core, or one for fewer than " SMALL_BATCH_TEXT " images", 0, 4096, NULL, false},
    };
    const char **positionals = calloc((size_t)(argc > 0 ? argc : 1), sizeof *positionals);
    if (!positionals) {
        fprintf(stderr, "ember predict: out of memory\n");
        return EXIT_LIBRARY_ERROR;
    }
    args_spec spec = {
        .command = "predict",
        .usage = "[MODEL] --weights FILE [options] IMAGE...",
        .summary = "Classify images with trained weights, printing the most probable classes.",
        .details = predict_details,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
        .min_positionals = 0,
        .max_positionals = argc,
        .positionals = positionals,
        .examples = predict_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0) {
        free(positionals);
        return status;
    }
    const char *model_path = NULL;
    int first_image = 0;
    if (spec.n_positionals > 0 && looks_like_description(positionals[0])) {
        model_path = positionals[0];
        first_image = 1;
    }
    if (!weights_path)
        status = args_usage_error(&spec, "--weights FILE is required");
    else if (spec.n_positionals <= first_image)
        status = args_usage_error(&spec, "no images given");
    if (status >= 0) {
        free(positionals);
        return status;
    }

    /* A few images take a millisecond or so on one core: waking a thread team would
     * cost more than it saves. */
    if (!args_given(&spec, "threads") && spec.n_positionals - first_image < SMALL_BATCH)
        threads = 1;
    em_set_num_threads((int)threads);
    int exit_status = EXIT_LIBRARY_ERROR;
    em_model *model = NULL;
    char *names_copy = NULL;
    const char **names_list = NULL;
    em_image **images = NULL;
    const char **image_paths = NULL;
    int pending = 0, failed = 0;
    input_layout layout = {0, 0, 0};

    if (model_path) {
        if (!(model = em_model_load(model_path, 0)) ||
            em_load_weights(model, weights_path, true, NULL, NULL) != EM_OK)
            goto fail;
    } else {
        if (!(model = em_model_from_checkpoint(weights_path)))
            goto fail;
        model_path = weights_path;
    }
    if (image_layout(model, model_path, &layout) != EM_OK)
        goto fail;
    int64_t out_shape[EM_MAX_DIMS];
    if (em_model_output_shape(model, out_shape) != 1 || out_shape[0] > MAX_CLASSES) {
        em_error("model %s gives outputs of shape %s per example; predict needs one score per class (at most %d)",
                 model_path, em_dims_str(em_model_output_shape(model, out_shape), out_shape), MAX_CLASSES);
        goto fail;
    }
    const int64_t num_classes = out_shape[0];

    class_labels labels = {NULL, 0};
    if (!classes_spec) {
        int n = 0;
        const char *const *fashion = em_dataset_class_names("fashion-mnist", &n);
        if (n == num_classes)
            labels = (class_labels){fashion, n};
    } else if (strcmp(classes_spec, "index") != 0) {
        int n = 0;
        labels.names = em_dataset_class_names(classes_spec, &n);
        labels.count = n;
        if (!labels.names) {
            names_copy = strdup(classes_spec);
            names_list = calloc(MAX_CLASSES, sizeof *names_list);
            if (!names_copy || !names_list) {
                em_error("out of memory");
                goto fail;
            }
            labels.count = split_names(names_copy, names_list, MAX_CLASSES);
            labels.names = names_list;
            if (labels.count == 1) {
                exit_status = args_usage_error(&spec,
                                               "--classes '%s' is neither a known dataset (fashion-mnist, mnist) "
                                               "nor a comma-separated list",
                                               classes_spec);
                goto done;
            }
        }
        if (labels.count != num_classes) {
            exit_status = args_usage_error(&spec, "--classes names %d classes but model %s has %lld outputs",
                                           labels.count, model_path, (long long)num_classes);
            goto done;
        }
    }
    if (top > num_classes)
        top = num_classes;

    images = calloc(CHUNK, sizeof *images);
    image_paths = calloc(CHUNK, sizeof *image_paths);
    if (!images || !image_paths) {
        em_error("out of memory");
        goto fail;
    }
    em_model_set_training(model, false);
    bool grad_was = em_set_grad_enabled(false);
    for (int i = first_image; i < spec.n_positionals; i++) {
        em_image *img = em_image_load(positionals[i]);
        if (!img) {
            cli_library_error();
            failed++;
        } else {
            images[pending] = img;
            image_paths[pending++] = positionals[i];
        }
        if (pending == CHUNK || (i + 1 == spec.n_positionals && pending > 0)) {
            int rc = classify(model, &layout, invert, images, image_paths, pending, (int)top, &labels);
            em_step_end();
            for (int k = 0; k < pending; k++)
                em_image_free(images[k]);
            pending = 0;
            if (rc != EM_OK) {
                em_set_grad_enabled(grad_was);
                goto fail;
            }
        }
    }
    em_set_grad_enabled(grad_was);
    exit_status = failed ? EXIT_LIBRARY_ERROR : EXIT_OK;
    goto done;

fail:
    cli_library_error();
done:
    for (int k = 0; k < pending; k++)
        em_image_free(images[k]);
    free(images);
    free(image_paths);
    free(names_copy);
    free(names_list);
    em_model_free(model);
    free(positionals);
    return exit_status;
}
