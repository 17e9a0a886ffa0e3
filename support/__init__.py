"""What the tests, the benchmarks and training share, so that they import this and not each other: where
the shared data lives (``paths``), the timing loop (``timing``), the app-server harness (``server``), the
synthetic clips (``clips``) and the facenet-pytorch reference (``reference_mtcnn``). It depends on
``facepose`` only; nothing in ``facepose`` or ``app.py`` imports it."""
