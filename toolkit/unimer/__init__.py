"""The Uni-MER method: measure a clip, make its rows, draw its report.

  parameters  every choice of the method, with its default (UnimerParameters)
  frames      decoding a sample's frames; a frame that does not decode cleanly rejects the sample
  measure     pass 1: face, motion curve, onset->apex flow, region motion (SampleMeasurement)
  rows        pass 2: calibrated evidence, captions, instructions, the unimer_sample rows
  report      the HTML report of a build (corpus figures, per-sample cards)
  charts      the report's charts, drawn with OpenCV (motion curve, support, magnitudes, rejections)

Each stage is a plain function of a typed record; how they run (pools, caches) is
`mertk.execution.measure_pool`, and which run in which order is `mertk.pipelines.build_unimer`.
"""
