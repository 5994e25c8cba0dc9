#!/bin/sh
# The tunes behind the shipped presets (clreplay/presets/<method>/<benchmark>/200.toml): a handful
# of points per method, 3 seeds, on a validation split (10% of every class of the training data),
# in the methods table's one-epoch protocol (stream batch 10 + memory batch 10, memory 200, MLP
# 100-100 initialised as the reference's, SGD without momentum, classes in label order).
#
#   sh bench/tuning/tune_all.sh split_digits OUT_DIR [JOBS]
#   sh bench/tuning/tune_all.sh split_fashion_mnist OUT_DIR [JOBS]
set -e
BENCH=${1:?benchmark}
OUT=${2:?folder}
JOBS=${3:-1}
BASE="--benchmark $BENCH --class-order label --epochs 1 --batch-size 10 --momentum 0 --hidden 100 100 \
--init xavier --mem-size 200 --seeds 0 1 2 --jobs $JOBS"
MEM="--batch-size-mem 10"
t() { name=$1; shift; clreplay tune $BASE --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1; tail -n 12 "$OUT/$name.log" | head -n 8; }
mkdir -p "$OUT"
t er --method er --policy reservoir $MEM --grid lr=0.03,0.1,0.2
t er-ace --method er-ace $MEM --grid lr=0.03,0.1,0.2
t der --method der $MEM --grid lr=0.03,0.1 --grid alpha=0.2,0.5
t derpp --method derpp $MEM --lr 0.1 --grid alpha=0.2,0.5 --grid beta=0.5,1.0
t cls-er --method cls-er $MEM --lr 0.1 --points bench/tuning/cls_er_points.toml
t mir --method mir $MEM --grid lr=0.03,0.1
t bic --method bic $MEM --grid lr=0.03,0.1
t scr --method scr $MEM --grid lr=0.03,0.1 --grid scr_temperature=0.07,0.2
t xder --method xder $MEM --grid lr=0.03,0.1
t icarl --method icarl $MEM --grid lr=0.03,0.1
t agem --method agem --sample-size 10 --grid lr=0.03,0.1
t gdumb --method gdumb --grid lr=0.03,0.1
t onpro --method onpro $MEM --grid lr=0.03,0.1
