/* ember eval: the loss and accuracy of saved weights on a dataset. The model comes from
 * a description file, or from the description a checkpoint carries in its metadata. */
#include <math.h>
#include <stdio.h>

#include "args.h"
#include "cli_common.h"
#include "commands.h"
#include "ember.h"

static const char *const split_names[] = {"train", "test", NULL};

static const char eval_details[] =
    "MODEL is a model description file; it may be left out when the checkpoint was\n"
    "written by ember (the description travels in its metadata). Weights are matched\n"
    "by name and shape; a missing or unexpected tensor is an error.\n"
    "Data specs are those of 'ember train': fashion-mnist, mnist, idx:IMAGES,LABELS,\n"
    "csv:FILE (files have no splits: --split only picks the split of a named dataset).\n";

static const char eval_examples[] =
    "  ember eval --weights mlp.safetensors\n"
    "  ember eval models/mlp.ember --weights mlp.safetensors --data fashion-mnist --split train\n";

int cmd_eval_main(int argc, char **argv, int first)
{
    const char *weights_path = NULL;
    const char *data_spec = "fashion-mnist";
    int split = 1; /* index into split_names */
    int64_t batch = 256, threads = 0, label_column = -1, seq_len = 64;

    args_option options[] = {
        {"weights", ARGS_STRING, "FILE", &weights_path, "safetensors checkpoint to evaluate",
         "required", 0, 0, NULL, false},
        {"data", ARGS_STRING, "SPEC", &data_spec,
         "data: fashion-mnist, mnist, idx:IMAGES,LABELS, csv:FILE, or text (a language model): fortunes, "
         "text:FILE", NULL, 0, 0, NULL, false},
        {"split", ARGS_CHOICE, "test|train", &split, "split of a named dataset", NULL, 0, 0,
         split_names, false},
        {"batch", ARGS_INT, "B", &batch, "examples per forward pass", NULL, 1, 1 << 24, NULL, false},
        {"threads", ARGS_INT, "T", &threads, "worker threads", "0: one per core", 0, 4096, NULL, false},
        {"label-column", ARGS_INT, "N", &label_column, "CSV column holding the label (0-based)",
         "-1: the last column", -1, 1e6, NULL, false},
        {"seq-len", ARGS_INT, "T", &seq_len, "text: bytes per window (the state carries across windows)", NULL, 1,
         1 << 24, NULL, false},
    };
    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "eval",
        .usage = "[MODEL] --weights FILE [options]",
        .summary = "Report the loss and accuracy of trained weights on a dataset.",
        .details = eval_details,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
        .min_positionals = 0,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = eval_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    if (!weights_path)
        return args_usage_error(&spec, "--weights FILE is required");
    const char *model_path = positionals[0];

    em_set_num_threads((int)threads);
    em_split which = split == 0 ? EM_SPLIT_TRAIN : EM_SPLIT_TEST;

    int exit_status = EXIT_LIBRARY_ERROR;
    em_dataset *ds = NULL;
    em_model *model = NULL;
    if (model_path) {
        model = em_model_load(model_path, 0);
        if (!model)
            goto fail;
        if (em_load_weights(model, weights_path, true, NULL, NULL) != EM_OK)
            goto fail;
    } else {
        model = em_model_from_checkpoint(weights_path);
        if (!model)
            goto fail;
        model_path = weights_path;
    }

    if (em_text_is_spec(data_spec)) {
        /* The whole text, in bits per byte: --batch tracks read window by window. */
        em_text *text = em_text_open(data_spec);
        em_lm_figures f;
        int rc = text ? em_evaluate_text(model, text, seq_len, batch < 64 ? batch : 64, 0, &f) : EM_ERR;
        if (rc == EM_OK)
            printf("%s: %.4f bits/byte, perplexity %.3f, next-byte accuracy %.2f%% (%lld bytes predicted; unigram "
                   "entropy %.4f bits/byte)\n",
                   text->source, f.bits_per_byte, f.perplexity, 100.0 * f.accuracy, (long long)f.bytes,
                   em_text_unigram_bits(text));
        em_text_free(text);
        if (rc != EM_OK)
            goto fail;
        exit_status = EXIT_OK;
        goto done;
    }
    ds = em_dataset_open(data_spec, which, (int)label_column);
    if (!ds)
        goto fail;
    if (cli_fit_dataset(model, model_path, ds) != EM_OK)
        goto fail;

    double loss = 0, accuracy = 0;
    if (em_evaluate(model, ds, batch, &loss, &accuracy) != EM_OK)
        goto fail;
    if (cli_spec_is_file(data_spec))
        printf("%s: ", data_spec);
    else
        printf("%s %s: ", data_spec, split_names[split]);
    printf("loss %.4f, accuracy %.2f%% (%lld/%lld)\n", loss, 100.0 * accuracy,
           llround(accuracy * (double)ds->count), (long long)ds->count);
    exit_status = EXIT_OK;
    goto done;

fail:
    cli_library_error();
done:
    em_dataset_free(ds);
    em_model_free(model);
    return exit_status;
}
