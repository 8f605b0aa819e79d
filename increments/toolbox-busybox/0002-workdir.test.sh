# A pod starts in the work folder
[ "$(pwd)" = /work ] || { echo "the working directory is $(pwd), not /work" >&2; exit 1; }
