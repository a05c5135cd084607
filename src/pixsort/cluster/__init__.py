"""The cluster stage: images (:mod:`~pixsort.cluster.images`) and table records
(:mod:`~pixsort.cluster.table`), sharing the noise label and the numbering by size
(:mod:`~.labels`), the choice of k (:mod:`~.select`) and the scores against known
labels (:mod:`~.metrics`).  The two sub-packages never import each other."""
