#!/usr/bin/env bash
# The model card's numbers for the shipped checkpoint: test events (seed 2000003, never used in training) of the
# built-in engine at mu = 0, 20, 200 and, when given, ACTS-engine events, reconstructed and evaluated by the
# real console command. Per-stage latency (ms/event) and the metrics table are printed by `reconstruct`.
#
#   bash benchmarks/model_card.sh OUT [ACTS_DIR] [--clusterer NAME --param K=V ...]
#   (MU200_EVENTS=1 to simulate one mu = 200 event instead of 3: HDBSCAN needs ~30-60 s per such event;
#    MU200_FILTER=CKPT also runs the mu = 200 events two-stage, `reconstruct --filter CKPT`, with the tracker
#    MU200_TRACKER=CKPT when given, e.g. data/checkpoints/tracker_mu200.ckpt; MU200_HARD=1 with MU200_FILTER also
#    runs two-stage on mu = 200 events whose first interaction is a hard scatter (`simulate --hard-scatter`, the
#    same test seed: high-pT tracks as in TrackML's ttbar events); PILEUPS="200" to run only some pile-ups)
#    MU200_SELECTOR=FILE adds `--selector FILE` (track selection, e.g. data/checkpoints/selector_mu200.pt) to them)
#
# ACTS_DIR holds mu0/, mu20/, mu200/ folders of TrackML CSV(.gz) events written by
#   trackformers simulate --engine acts --events 3 --pileup MU --seed 2000003 --volumes 7,8,9 --out ACTS_DIR/muMU
set -euo pipefail
out=$1; shift
acts=""
if [[ $# -gt 0 && $1 != --* ]]; then acts=$1; shift; fi
for mu in ${PILEUPS:-0 20 200}; do
    n=9; [[ $mu == 200 ]] && n=${MU200_EVENTS:-3}
    python -m trackformers simulate --events $n --pileup $mu --seed 2000003 --first-event-id 2000003 \
        --volumes 7,8,9 --out "$out/events/mu$mu" --quiet
    echo "== built-in mu=$mu ($n events) $*"
    python -m trackformers reconstruct "$out/events/mu$mu" --out "$out/sub/mu$mu" --evaluate --no-progress "$@"
    if [[ -n $acts && -d $acts/mu$mu ]]; then
        echo "== ACTS mu=$mu $*"
        python -m trackformers reconstruct "$acts/mu$mu" --out "$out/sub/acts$mu" --evaluate --no-progress "$@"
    fi
    if [[ $mu == 200 && -n ${MU200_FILTER:-} ]]; then
        # the two-stage arguments, once: the filter, then the tracker when one is given
        two=(--filter "$MU200_FILTER")
        if [[ -n ${MU200_TRACKER:-} ]]; then two+=(--checkpoint "$MU200_TRACKER"); fi
        if [[ -n ${MU200_SELECTOR:-} ]]; then two+=(--selector "$MU200_SELECTOR"); fi
        echo "== built-in mu=200 two-stage ${two[*]} $*"
        python -m trackformers reconstruct "$out/events/mu$mu" --out "$out/sub/filter$mu" --evaluate --no-progress \
            "${two[@]}" "$@"
        if [[ -n $acts && -d $acts/mu$mu ]]; then
            echo "== ACTS mu=200 two-stage ${two[*]} $*"
            python -m trackformers reconstruct "$acts/mu$mu" --out "$out/sub/actsfilter$mu" --evaluate --no-progress \
                "${two[@]}" "$@"
        fi
        if [[ ${MU200_HARD:-0} == 1 ]]; then
            python -m trackformers simulate --events $n --pileup 200 --seed 2000003 --first-event-id 3000003 \
                --hard-scatter --volumes 7,8,9 --out "$out/events/hard200" --quiet
            echo "== built-in mu=200 hard scatter ($n events) two-stage ${two[*]} $*"
            python -m trackformers reconstruct "$out/events/hard200" --out "$out/sub/hardfilter200" --evaluate \
                --no-progress "${two[@]}" "$@"
        fi
    fi
done
