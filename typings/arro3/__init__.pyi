# obstore's stubs name arro3's Arrow types (for its optional return_arrow=True), and arro3-core
# is not a dependency: these stand-ins keep obstore's listing functions fully typed.
