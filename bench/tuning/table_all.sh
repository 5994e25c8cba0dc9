#!/bin/sh
# The long runs behind docs/results/methods.md, in order of priority (each resumes where it stopped):
#   nice -n 19 sh bench/tuning/table_all.sh
set -e
T="python bench/tuned_table.py"
TEN="0 1 2 3 4 5 6 7 8 9"
$T --datasets fmnist --settings 1ep-m200 --seeds $TEN
$T --datasets digits --settings 1ep-m200 --seeds $TEN
$T --datasets fmnist --settings 1ep-m500 --seeds 0 1 2
$T --datasets fmnist --settings 5ep-m200 --seeds 0 1 2
$T --datasets pfmnist --settings 1ep-m200 --seeds 0 1 2 --methods naive er der derpp er-ace bic cls-er mir
