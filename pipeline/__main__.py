"""python -m pipeline"""

from pipeline._entry import main

main()
