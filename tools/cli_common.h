/* Pieces that several commands of the ember tool share: reporting library errors,
 * opening and matching datasets to a model's input, and checking output paths. */
#ifndef EMBER_TOOLS_CLI_COMMON_H
#define EMBER_TOOLS_CLI_COMMON_H

#include "ember.h"

/* Prints "ember: <last library error>" to stderr; returns EXIT_LIBRARY_ERROR. */
int cli_library_error(void);

/* Makes ds's items the shape of the model's input: a reshape when only the layout
 * differs (784 values vs 1x28x28), otherwise an error naming both shapes. Also checks
 * that the labels fit the model's outputs. */
int cli_fit_dataset(const em_model *m, const char *model_name, em_dataset *ds);

/* True when spec names a file ("idx:...", "csv:...") rather than a named dataset with
 * its own train and test splits. */
bool cli_spec_is_file(const char *spec);

/* Fails early, before hours of training, when `path` (given with --option) cannot be
 * created: its directory is missing or read-only, or it names a directory. */
int cli_check_writable(const char *option, const char *path);

/* The training data of data_spec and the test data: test_spec's test split, else
 * data_spec's own when it has one (a named dataset), else none, which is an error when
 * test_required. On failure *train may hold the opened training data, for the caller
 * to free with the rest. */
int cli_open_data(const char *data_spec, const char *test_spec, int label_column, bool test_required,
                  em_dataset **train, em_dataset **test);

/* cli_check_writable for each file the options ask to write: --save, --plot,
 * --metrics and --checkpoint. */
int cli_check_outputs(const em_train_opts *o);
/* After training: a line for each file written (checkpoint, weights, plot, metrics). */
void cli_report_outputs(const em_train_opts *o);

#endif
