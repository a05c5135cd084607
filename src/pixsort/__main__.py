from pixsort.cli import main

main()
