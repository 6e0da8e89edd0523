from videosafety.cli import main

main()
