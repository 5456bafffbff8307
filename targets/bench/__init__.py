"""edge-bench as a package (it sits above targets: it builds bundles and
sherpa-onnx exports, and times them).

columns    the table of columns (backend labels, aliases): a new one is a row
workload   the audio every column runs
pipeline   the per-chunk loop being timed (Pipeline) and one end-to-end pass
configs    one loaded configuration per column: ours, PyTorch, sherpa-onnx
artifacts  the bundle files a column times (built here or given)
sherpa_columns  the sherpa-onnx files: our export and the zipformer package's
flops      FLOPs, matmul peak, the int8 ceiling experiment
machine    machine facts and the fresh child for cold start / peak memory
stats      per-pass statistics, paired ratios, the project's targets (JSON and docs only), Pi estimate
run        run_bench: the round-robin and the rows
report     JSON, the table and its notes, the chart title
plot       the chart
cli        edge-bench's arguments and main
"""

from .cli import main
from .columns import ALL_BACKENDS, DEFAULT_BACKENDS, BenchError, parse_backends, parse_threads
from .flops import int8_matmul_ceiling, matmul_peak_gflops, onnx_macs
from .report import chart_title, format_table, write_json
from .run import REPEATS, ROW_KEYS, merge_results, run_bench
from .stats import PAIRS, paired_speedup

__all__ = ["ALL_BACKENDS", "DEFAULT_BACKENDS", "PAIRS", "REPEATS", "ROW_KEYS", "BenchError", "chart_title",
           "format_table", "int8_matmul_ceiling", "main", "matmul_peak_gflops", "merge_results", "onnx_macs",
           "paired_speedup", "parse_backends", "parse_threads", "run_bench", "write_json"]
