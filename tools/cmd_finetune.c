/* ember finetune: transfer learning from pre-trained weights. The model is built from
 * its description (or the one stored in the weights file), the weights are loaded by
 * name with whatever did not fit reported by name, matching parameters are frozen, the
 * classifier head is replaced, and the rest is trained by em_train. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli_common.h"
#include "cli_stop.h"
#include "cli_training.h"
#include "commands.h"
#include "ember.h"

static const char finetune_details[] =
    "Loads the tensors of FILE into MODEL by name (PyTorch state_dict names: a\n"
    "state_dict saved as safetensors loads without renaming). Tensors of the model\n"
    "missing from the file keep their fresh initialisation and tensors of the file\n"
    "unknown to the model are ignored; both are listed by name (--strict makes them\n"
    "errors). Without MODEL, the description stored in FILE is used.\n"
    "\n"
    "Then, in this order: --freeze stops training the parameters whose names match\n"
    "(shell patterns such as '*', '0.*,3.*'; no gradient is computed or kept for them),\n"
    "--replace-head gives the last linear layer CLASSES outputs with fresh weights\n"
    "(always trained), and training runs as with 'ember train'. --unfreeze-after N\n"
    "trains the frozen parameters too from epoch N+1, with --unfreeze-lr.\n"
    "\n"
    "--classes picks classes of the data and numbers them from 0 in the order given\n"
    "(\"5-9\" or \"5,6,7,8,9\"), for the training and the test data; --per-class keeps a\n"
    "seeded sample of that many training examples of each.\n";

static const char finetune_examples[] =
    "  ember finetune models/cnn.ember --from cnn-0to4.safetensors --freeze '*' \\\n"
    "      --replace-head 5 --classes 5-9 --per-class 100 --epochs 20 --optimizer adam\n"
    "  ember finetune --from pretrained.safetensors --freeze '0.*,3.*' --unfreeze-after 3 \\\n"
    "      --unfreeze-lr 1e-4 --data csv:new.csv --save tuned.safetensors\n";

/* "5-9" or "5,6,7" (or mixed) into classes; returns the count or -1. */
static int parse_classes(const char *text, int *classes, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || lo < 0 || lo > 1000000)
            return -1;
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1 || hi < lo || hi > 1000000)
                return -1;
            p = end;
        }
        for (long c = lo; c <= hi; c++) {
            if (n == cap)
                return -1;
            classes[n++] = (int)c;
        }
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

static em_model *build_model(const char *model_path, const char *from, uint64_t seed)
{
    if (model_path)
        return em_model_load(model_path, seed);
    em_st_file *f = em_st_open(from);
    if (!f)
        return NULL;
    const char *description = em_st_metadata(f, "ember.model");
    em_model *m = NULL;
    if (!description)
        em_error("%s holds no model description (\"ember.model\"): give the MODEL file whose tensors it "
                 "holds, e.g. 'ember finetune models/cnn.ember --from %s'",
                 from, from);
    else
        m = em_model_parse(description, from, seed);
    em_st_close(f);
    return m;
}

/* A view of ds (which must outlive it), or NULL when nothing is selected. */
static em_dataset *select_data(const em_dataset *ds, const int *classes, int n_classes, int64_t per_class,
                               uint64_t seed)
{
    int all[1024];
    if (n_classes == 0) {
        n_classes = ds->num_classes < 1024 ? ds->num_classes : 1024;
        for (int c = 0; c < n_classes; c++)
            all[c] = c;
        classes = all;
    }
    return em_dataset_select_classes(ds, classes, n_classes, per_class, seed);
}

int cmd_finetune_main(int argc, char **argv, int first)
{
    const char *from = NULL, *freeze = NULL, *classes_text = NULL;
    int64_t head = 0, unfreeze_after = 0, per_class = 0;
    double unfreeze_lr = 0;
    bool strict = false;
    const char *data_spec = "fashion-mnist", *test_spec = NULL;
    int64_t label_column = -1;
    int optimizer = EM_OPTIM_SGD;
    double lr = 0, momentum = 0, weight_decay = 0;
    cli_run_options run = {.epochs = 1, .batch = 64, .progress = EM_PROGRESS_AUTO};

    const char *optimizer_names[EM_OPTIM_KIND_COUNT + 1];
    cli_optimizer_names(optimizer_names);

    args_option options[] = {
        {"from", ARGS_STRING, "FILE", &from, "pre-trained weights (safetensors, PyTorch state_dict names)", NULL, 0,
         0, NULL, false},
        {"strict", ARGS_FLAG, NULL, &strict, "missing or unexpected tensors are errors", NULL, 0, 0, NULL, false},
        {"freeze", ARGS_STRING, "PATTERNS", &freeze, "parameters not to train: shell patterns, ',' between",
         "none", 0, 0, NULL, false},
        {"replace-head", ARGS_INT, "CLASSES", &head, "new last linear layer with this many outputs",
         "keep the head", 1, 1e6, NULL, false},
        {"unfreeze-after", ARGS_INT, "N", &unfreeze_after, "train the frozen parameters too after N epochs",
         "never", 1, 1e6, NULL, false},
        {"unfreeze-lr", ARGS_FLOAT, "X", &unfreeze_lr, "their learning rate", "a tenth of --lr", 0, 1e6, NULL,
         false},
        {"data", ARGS_STRING, "SPEC", &data_spec,
         "training data: fashion-mnist, mnist, idx:IMAGES,LABELS or csv:FILE", NULL, 0, 0, NULL, false},
        {"test-data", ARGS_STRING, "SPEC", &test_spec, "test data", "the test split of --data", 0, 0, NULL, false},
        {"classes", ARGS_STRING, "LIST", &classes_text, "use these classes only, renumbered from 0 (5-9, 1,3,5)",
         "all", 0, 0, NULL, false},
        {"per-class", ARGS_INT, "N", &per_class, "training examples of each class (seeded sample)", "all", 1, 1e9,
         NULL, false},
        {"label-column", ARGS_INT, "N", &label_column, "CSV column holding the label (0-based)",
         "-1: the last column", -1, 1e6, NULL, false},
        {"epochs", ARGS_INT, "N", &run.epochs, "passes over the training data", NULL, 1, 1e6, NULL, false},
        {"batch", ARGS_INT, "B", &run.batch, "examples per step", NULL, 1, 1 << 24, NULL, false},
        {"optimizer", ARGS_CHOICE, "NAME", &optimizer, "optimizer", NULL, 0, 0, optimizer_names, false},
        {"lr", ARGS_FLOAT, "X", &lr, "learning rate", "the optimizer's default", 1e-12, 1e6, NULL, false},
        {"momentum", ARGS_FLOAT, "M", &momentum, "SGD momentum", NULL, 0, 1, NULL, false},
        {"weight-decay", ARGS_FLOAT, "W", &weight_decay, "L2 penalty added to the gradients", NULL, 0, 1e6, NULL,
         false},
        {"seed", ARGS_INT, "S", &run.seed, "seed of the new head, data order, sampling and dropout", NULL, 0, 9e18,
         NULL, false},
        {"threads", ARGS_INT, "T", &run.threads, "worker threads", "0: one per core", 0, 4096, NULL, false},
        {"save", ARGS_STRING, "FILE", &run.save_path, "write the fine-tuned weights at the end", NULL, 0, 0, NULL,
         false},
        {"checkpoint", ARGS_STRING, "FILE", &run.checkpoint_path, "full training state, at the end and on Ctrl-C",
         NULL, 0, 0, NULL, false},
        {"checkpoint-every", ARGS_INT, "N", &run.checkpoint_every, "steps between checkpoints", "0: at the end only",
         0, 9e15, NULL, false},
        {"resume", ARGS_STRING, "FILE", &run.resume_path, "continue from a checkpoint of this fine-tuning", NULL, 0,
         0, NULL, false},
        {"progress", ARGS_CHOICE, "MODE", &run.progress, "auto, bar, lines or quiet", NULL, 0, 0, cli_progress_names,
         false},
    };
    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "finetune",
        .usage = "[MODEL] --from FILE [options]",
        .summary = "Train a model starting from pre-trained weights (transfer learning).",
        .details = finetune_details,
        .options = options,
        .n_options = (int)(sizeof options / sizeof options[0]),
        .min_positionals = 0,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = finetune_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    const char *model_path = positionals[0];
    if (!from)
        return args_usage_error(&spec, "--from FILE is required (the pre-trained weights)");
    int classes[1024];
    int n_classes = 0;
    if (classes_text && (n_classes = parse_classes(classes_text, classes, 1024)) < 1)
        return args_usage_error(&spec, "--classes '%s': expected class numbers and ranges like 5-9 or 1,3,5",
                                classes_text);
    em_optim_kind kind = (em_optim_kind)optimizer;
    if (kind != EM_OPTIM_SGD && args_given(&spec, "momentum"))
        return args_usage_error(&spec, "--momentum applies to sgd, not %s", em_optim_name(kind));
    if (args_given(&spec, "unfreeze-lr") && !unfreeze_after)
        return args_usage_error(&spec, "--unfreeze-lr needs --unfreeze-after N");
    if (unfreeze_after && !freeze)
        return args_usage_error(&spec, "--unfreeze-after needs --freeze (nothing is frozen)");
    status = cli_run_check(&run, &spec);
    if (status >= 0)
        return status;

    em_train_opts opts = em_train_defaults();
    cli_run_apply(&run, &opts);
    opts.optimizer = kind;
    opts.optim = em_optim_defaults(kind);
    if (args_given(&spec, "lr"))
        opts.optim.lr = (float)lr;
    if (args_given(&spec, "momentum"))
        opts.optim.momentum = (float)momentum;
    if (args_given(&spec, "weight-decay"))
        opts.optim.weight_decay = (float)weight_decay;
    opts.unfreeze_after = (int)unfreeze_after;
    opts.unfreeze_lr = args_given(&spec, "unfreeze-lr") ? (float)unfreeze_lr : opts.optim.lr / 10.0f;

    int exit_status = EXIT_LIBRARY_ERROR;
    em_dataset *train = NULL, *test = NULL, *train_all = NULL, *test_all = NULL;
    em_model *model = NULL;
    if (cli_check_outputs(&opts) != EM_OK)
        goto fail;

    model = build_model(model_path, from, (uint64_t)run.seed);
    if (!model)
        goto fail;
    em_load_report report;
    if (em_load_weights_report(model, from, strict, &report) != EM_OK)
        goto fail;
    printf("loaded %d tensors from %s\n", report.loaded, from);
    if (report.missing)
        printf("missing from the file (%d, freshly initialised): %s\n", report.missing, report.missing_names);
    if (report.unexpected)
        printf("unexpected in the file (%d, ignored): %s\n", report.unexpected, report.unexpected_names);
    if (freeze) {
        int n = em_model_freeze(model, freeze);
        if (n < 0)
            goto fail;
        printf("froze %d parameter tensors matching '%s'\n", n, freeze);
    }
    if (head > 0) {
        int index = em_model_head_index(model);
        int64_t old_out[EM_MAX_DIMS];
        int old_ndim = em_model_output_shape(model, old_out);
        em_model *replaced = em_model_replace_head(model, head, (uint64_t)run.seed);
        if (!replaced)
            goto fail;
        em_model_free(model);
        model = replaced;
        printf("replaced the head (layer %d): %lld -> %lld outputs, fresh weights\n", index,
               old_ndim ? (long long)old_out[old_ndim - 1] : 0LL, (long long)head);
    }
    if (em_model_trainable_count(model) == 0 && !unfreeze_after) {
        em_error("every parameter is frozen and the head is kept: nothing would train (add --replace-head, "
                 "or freeze fewer parameters)");
        goto fail;
    }

    if (cli_open_data(data_spec, test_spec, (int)label_column, false, &train_all, &test_all) != EM_OK)
        goto fail;
    /* Views over the loaded data, which stays until the end. */
    if (n_classes || per_class > 0) {
        if (!(train = select_data(train_all, classes, n_classes, per_class, (uint64_t)run.seed)))
            goto fail;
        if (test_all && n_classes && !(test = select_data(test_all, classes, n_classes, 0, (uint64_t)run.seed)))
            goto fail;
    }
    const em_dataset *train_set = train ? train : train_all;
    const em_dataset *test_set = test ? test : test_all;
    if (cli_fit_dataset(model, model_path ? model_path : from, (em_dataset *)train_set) != EM_OK ||
        (test_set && cli_fit_dataset(model, model_path ? model_path : from, (em_dataset *)test_set) != EM_OK))
        goto fail;

    printf("model: %lld parameters, %lld trained; data %s: %lld train, %lld test; %s lr %g, batch %lld\n",
           (long long)em_model_param_count(model), (long long)em_model_trainable_count(model), data_spec,
           (long long)train_set->count, test_set ? (long long)test_set->count : 0LL, em_optim_name(kind),
           (double)opts.optim.lr,
           (long long)run.batch);
    fflush(stdout);

    em_train_result result;
    int stopped = cli_train_stoppable(model, train_set, test_set, &opts, &result);
    if (stopped >= 0) {
        exit_status = stopped;
        goto done;
    }
    const em_epoch_stats *s = &result.last;
    printf("final: epochs %d, train loss %.4f", result.epochs_run, s->train_loss);
    if (test_set && !isnan(s->test_accuracy))
        printf(", test loss %.4f, test accuracy %.2f%% (%lld/%lld)", s->test_loss, 100.0 * s->test_accuracy,
               llround(s->test_accuracy * (double)test_set->count), (long long)test_set->count);
    printf(", %.1f s\n", result.total_seconds);
    if (run.save_path)
        printf("saved %s\n", run.save_path);
    if (run.checkpoint_path)
        printf("checkpoint %s\n", run.checkpoint_path);
    exit_status = EXIT_OK;
    goto done;

fail:
    fflush(stdout);
    cli_library_error();
done:
    em_dataset_free(test);
    em_dataset_free(train);
    em_dataset_free(test_all);
    em_dataset_free(train_all);
    em_model_free(model);
    return exit_status;
}
