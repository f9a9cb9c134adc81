# ruff: noqa: E501  (this file is mostly Korean prose for markdown cells)
"""Generate the workbook notebooks from this file: `python tools/build_notebooks.py`.

Notebooks are JSON; writing them by hand invites merge conflicts and stray outputs. Each
notebook here is a list of markdown and code cells; the generated `.ipynb` files are valid
nbformat 4.5, with stable cell ids, and stored WITHOUT outputs or execution counts.

    python tools/build_notebooks.py            # write notebooks/*.ipynb
    python tools/build_notebooks.py --check    # exit 1 if a committed notebook is out of date
    python tools/build_notebooks.py 03-cqrs    # only some

`labkit notebooks reset` restores a student's broken notebook from git HEAD (or, outside a git
checkout, from `render_all()` here).

Conventions (docs: /DESIGN.md "Notebook conventions"): Korean narrative, English code; every
notebook starts with `lab = labkit.connect(); lab.up()` and ends with a checkpoint cell that
raises on failure; widget cells are `# NBVAL_IGNORE_OUTPUT` and have a plain twin cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


def setup(imports: str = "checks, plots") -> tuple[str, str]:
    return code(f"""
import labkit
from labkit.workbook import {imports}

lab = labkit.connect()  # 모드는 LABKIT_MODE 환경 변수로 정해진다 (기본: local)
lab.up()                # 이미 떠 있는 것은 그대로 둔다 (idempotent): 몇 번을 실행해도 된다
""")


SETUP = setup()


def checkpoint_cells(section: str, title: str) -> list[tuple[str, str]]:
    return [
        md(f"""
## ✅ 실습 체크포인트: {title}

아래 셀은 과정의 체크리스트를 **실제 시스템에 대고** 확인합니다. 각 줄의 `evidence`가 무엇을
보고 통과(또는 실패)했는지 알려 줍니다. `➖ n/a`는 이 모드에서는 확인할 수 없는 항목입니다
(이유가 함께 적혀 있습니다). 하나라도 실패하면 셀이 에러로 멈춥니다.
"""),
        code(f"""
results = checks.run(lab, "{section}")
display(checks.report(results))
checks.assert_ok(results)
"""),
    ]


# ---- 00-setup -------------------------------------------------------------------------------------
NB_00 = [
    md("""
# 00. 실습 환경 준비 🛠️

<div align="center">

**🔄 Saga 패턴** • **📊 CQRS** • **🎭 Event Sourcing** • **🌐 Kubernetes Native**

</div>

## 🎯 목표
- 이 워크북이 **무엇을 만드는지** 전체 그림을 본다
- 내 컴퓨터(또는 클러스터)가 실습할 준비가 되었는지 `lab.doctor()`로 점검한다
- `lab.up()` 한 줄로 전체 시스템을 **실제로** 띄우고, 무엇이 떠 있는지 확인한다

> 💡 과정 원문에서는 nginx가 미리 적어 둔 JSON을 돌려주고, 사가는 `echo "SUCCESS"`, 이벤트 프로세서는 `cat`이었습니다.
> 이 워크북에서는 **모든 것이 실제로 일어납니다**: 돈이 계좌 사이를 이동하고, 재고가 예약·해제되고,
> 이벤트가 낙관적 동시성(expected version)으로 저장되고, 조회 모델이 로그에서 다시 만들어집니다.

| 노트북 | 내용 | 과정 단계 |
|---|---|---|
| 00-setup | 환경 점검, 전체 시스템 기동 | Step 1-1 |
| 01-networking | Service, DNS, Gateway/Ingress 라우팅, NetworkPolicy | Step 1-2 |
| 02-saga | 주문 사가, 보상 트랜잭션, 장애 주입 | Step 2 |
| 03-cqrs | 명령/조회 분리, 최종 일관성, 409 충돌 | Step 3 |
| 04-event-sourcing | 이벤트 로그, fold, 시간 여행, 재생, 스키마 변경 | Step 4 |
| 05-checkpoints | 전체 체크포인트 | 고급 테스트 및 검증 |
| 06-cleanup | 만든 것만 정확히 지우기 | 실습 정리 |
"""),
    md("""
## 🏗️ 전체 아키텍처

과정의 아키텍처를 그대로 따르되, 가짜 대신 진짜 프로세스가 돕니다. 라우팅은 은퇴한 ingress-nginx 대신
**Gateway API(HTTPRoute)** 를 쓰고, 과정의 Ingress는 레거시 API로 함께 둡니다 (01-networking에서 자세히).

```mermaid
graph TB
    subgraph "Client Layer"
        U[학생 노트북<br/>labkit]
    end
    subgraph "Routing Layer"
        GW[Gateway API HTTPRoute<br/>레거시: Ingress]
    end
    subgraph "Saga Participants"
        US[user-service]
        OS[order-service]
        IS[inventory-service]
        PS[payment-service]
    end
    subgraph "Saga Orchestration"
        SO[saga-orchestrator<br/>Job / Deployment]
    end
    subgraph "CQRS"
        CS[command-service<br/>쓰기 x2]
        QS[query-service<br/>읽기 x3]
    end
    subgraph "Event Sourcing"
        ESA[event-store-api<br/>로그 조회, 재생]
        EP[event-processor<br/>CronJob + Deployment]
    end
    subgraph "Data Layer"
        WDB[(Event Store<br/>PostgreSQL / SQLite)]
        RDB[(Read Model<br/>Redis / SQLite)]
    end
    U --> GW
    GW --> US & OS & IS & PS & CS & QS & ESA
    SO --> US & OS & IS & PS
    US --> CS
    US & OS & IS & PS & CS & SO --> WDB
    ESA --> WDB
    EP --> WDB
    EP --> RDB
    QS --> RDB
    style GW fill:#ff9800
    style SO fill:#ff5722
    style CS fill:#2196f3
    style QS fill:#9c27b0
    style WDB fill:#795548
```

**두 가지 모드** — 노트북은 한 글자도 바꾸지 않고 환경 변수 `LABKIT_MODE`로 바꿉니다.

| | local (기본) | cluster |
|---|---|---|
| 서비스 | 이 컴퓨터의 프로세스 (127.0.0.1) | Deployment + ClusterIP Service |
| 이벤트 저장소 | SQLite 파일 (WAL) | PostgreSQL StatefulSet + PVC + Secret |
| 조회 모델 | SQLite 파일 | Redis |
| 서비스 주소 | `LABKIT_<SERVICE>_URL` = `http://127.0.0.1:<port>` | 같은 변수 = 클러스터 DNS 이름 |
| 무엇을 실행하나 | `manifests/`의 컨테이너 명령 그대로 | `manifests/`를 그대로 apply |
"""),
    code("""
import labkit
from labkit.workbook import checks

lab = labkit.connect()  # LABKIT_MODE=local (기본) 또는 cluster
lab
"""),
    md("""
## Step 1: 사전 점검 (`lab.doctor()`)

과정에서는 `aws sts get-caller-identity`로 준비를 확인했습니다. 여기서는 파이썬 버전, 패키지, 데이터 디렉터리,
디스크, 매니페스트를, 클러스터 모드라면 kubeconfig·API 서버·권한·Gateway API CRD·노드의 이미지까지 봅니다.
`ok`가 `False`인 줄이 있으면 `detail`에 적힌 대로 고친 뒤 다시 실행하세요.
"""),
    code("""
doctor = lab.doctor()
doctor
"""),
    code("""
problems = doctor[doctor["ok"].eq(False)]
assert problems.empty, "doctor가 문제를 찾았습니다 / doctor found problems:\\n" + problems.to_string()
"""),
    md("""
## Step 2: 전체 시스템 띄우기 (`lab.up()`)

과정의 `./setup-environment.sh`에 해당합니다. local 모드에서는 `manifests/`에 적힌 컨테이너 명령
(`python -m ecommerce.services.order` 등)을 같은 환경 변수 이름으로 **프로세스**로 띄우고, 모든 서비스의 `/readyz`가
200을 돌려줄 때까지 기다립니다 (진행 표시줄이 보입니다). 이미 떠 있는 것은 건드리지 않으므로 몇 번을 실행해도 됩니다.
"""),
    code("""
import time

started = time.perf_counter()
status = lab.up()  # 진행 표시줄: 준비된 서비스 수
print(f"ready in {time.perf_counter() - started:.1f}s ({lab.mode} mode)")
status
"""),
    md("""
## 보기: 무엇이 어디서 돌고 있나

- `service`: 서비스 이름 (쿠버네티스의 Service/Deployment 이름과 같음)
- `url`: 이 모드에서 그 서비스에 닿는 주소 (HTTP가 없는 워커는 비어 있음)
- `pid` / `status`: 프로세스 번호와 상태 (`ready` = `/readyz`가 200, `running` = HTTP 없는 워커가 살아 있음)

터미널에서는 `labkit status`가 같은 표를 보여 줍니다. **매니페스트가 진실의 원천**입니다: 아래는 `manifests/`에
선언된 워크로드와 그 컨테이너 명령이고, local 모드는 바로 이 명령을 실행합니다.
"""),
    code("""
import pandas as pd
from labkit.runtime.manifests import container_specs

pd.DataFrame([{"workload": c.workload, "kind": c.kind, "step": c.step, "command": " ".join(c.command)}
              for c in container_specs().values()])
"""),
    md("""
서비스 하나에 직접 물어봅시다. 모든 서비스는 `/healthz`(살아 있나)와 `/readyz`(데이터베이스에 닿나)를 가집니다.
query-service는 **조회 모델만** 확인한다는 점을 눈여겨 보세요 (03-cqrs에서 다시 봅니다).
"""),
    code("""
lab.http("query-service").get("/readyz").json()
"""),
    md("""
## 위젯: 실시간 상태 패널

아래 패널의 **새로고침**을 누르거나 **자동**을 켜면 `lab.status()`가 주기적으로 다시 그려집니다.
다른 노트북에서 프로세스를 죽였다 살릴 때 이 패널을 옆에 띄워 두면 좋습니다.
(바로 아래의 쌍둥이 셀은 같은 함수를 그냥 호출합니다: 위젯이 없어도 같은 결과를 봅니다.)
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
from labkit.workbook import widgets

widgets.status_panel(lab)
"""),
    code("""
lab.status()  # 위젯의 쌍둥이: 같은 함수
"""),
    *checkpoint_cells("Setup", "환경 준비"),
    md("""
다음: **01-networking** 에서 서비스들이 서로를 어떻게 찾는지 봅니다.
"""),
]


# ---- 01-networking ---------------------------------------------------------------------------------
NB_01 = [
    md("""
# 01. 쿠버네티스 네이티브 네트워킹 🌐

## 🎯 목표
- 서비스가 서로를 **DNS 이름**으로 찾는 방법(서비스 디스커버리)을 확인한다
- 외부 요청이 들어오는 길: **Gateway API(HTTPRoute)** 와 레거시 **Ingress**를 나란히 보고, 과정의 Ingress가 가진 버그를 직접 재현한다
- 모든 경로를 실제로 호출하고, 누가 누구를 부르는지 **서비스 맵**으로 본다
- **NetworkPolicy**가 무엇을 허용하는지 매니페스트에서 읽고, 막힌 호출을 본다 (클러스터 모드)

> 과정 Step 1-2 (15분) — *추가 도구 없이 순수 Kubernetes 리소스만으로 마이크로서비스 간 통신 구현*
"""),
    md("""
## 💡 개념: Service, DNS, 라우팅

```mermaid
graph LR
    C[클라이언트<br/>Host: api.local] --> GW[Gateway<br/>HTTPRoute]
    GW -->|/api/users| S1[user-service<br/>ClusterIP :80]
    GW -->|/api/commands| S4[command-service<br/>ClusterIP :80]
    GW -->|/api/queries| S5[query-service<br/>ClusterIP :80]
    S1 -->|selector| P1[user-service Pod :8080]
    S4 -->|selector| P4[command-service Pod x2]
    S5 -->|selector| P5[query-service Pod x3]
    P1 -->|http://command-service| S4
    style GW fill:#ff9800
    style S1 fill:#4caf50
    style S4 fill:#4caf50
    style S5 fill:#4caf50
```

- **ClusterIP Service**: 변하지 않는 가상 IP와 DNS 이름 `<service>.<namespace>.svc.cluster.local`을 줍니다.
  파드가 죽고 새로 떠서 IP가 바뀌어도, 클라이언트는 이름만 알면 됩니다. 같은 네임스페이스에서는 `http://command-service`처럼 짧은 이름도 됩니다.
- **서비스 디스커버리**: 각 서비스는 동료의 주소를 `LABKIT_<SERVICE>_URL` 환경 변수로 받습니다.
  클러스터에서는 그 값이 DNS 이름이고, local 모드에서는 같은 변수에 `http://127.0.0.1:<port>`가 들어갑니다. 코드는 똑같습니다.
- **라우팅**: 클러스터 밖의 요청은 Gateway가 경로 접두사(`/api/users` ...)를 보고 해당 Service로 보냅니다.
"""),
    SETUP,
    md("""
## Step 1: 서비스 디스커버리 — 누가 어디에 있나

과정의 `nslookup command-service.ecommerce-microservices.svc.cluster.local`이 하는 일을 표로 봅니다:
같은 서비스가 클러스터에서는 어떤 이름이고, 지금 이 실습에서는 어디에 있는지.
"""),
    code("""
import pandas as pd
from ecommerce.config import service_url_var

http_services = ["user-service", "order-service", "inventory-service", "payment-service",
                 "command-service", "query-service", "event-store-api"]
pd.DataFrame([{"service": name,
               "env var": service_url_var(name),
               "cluster DNS": f"http://{name}.{lab.settings.namespace}.svc.cluster.local",
               f"this lab ({lab.mode})": lab.url(name)}
              for name in http_services])
"""),
    md("""
user-service는 `POST /api/users`를 받으면 직접 쓰지 않고 **command-service에 전달**합니다
(`user-*` 스트림에 쓰는 것은 command-service 하나뿐). 매니페스트는 그 주소를 이렇게 줍니다:
"""),
    code("""
from labkit.runtime.manifests import container_specs

{k: v for k, v in container_specs()["user-service"].literal_env.items() if k.endswith("_URL")}
"""),
    md("""
실제로 불러 봅시다. user-service → command-service 호출이 성공하면 이벤트 저장소에 `user-<id>` 스트림이 생기고,
그 이벤트의 `metadata.command`가 command-service가 썼다는 증거입니다.
"""),
    code("""
import uuid

resp = lab.http("user-service").post("/api/users", json={"name": "김네트",
                                                         "email": f"net.{uuid.uuid4().hex[:6]}@example.com"})
print(resp.status_code, resp.json())
first_event = lab.stream(f"user-{resp.json()['id']}")[0]
first_event["event_type"], first_event["metadata"]
"""),
    md("""
## Step 2: 라우팅 표 — HTTPRoute 와 레거시 Ingress

과정은 `ingress-nginx` 컨트롤러 v1.8.1을 설치하고 아래 주석이 붙은 Ingress를 만들었습니다.

```yaml
annotations:
  nginx.ingress.kubernetes.io/rewrite-target: /
```

여기에는 두 가지 문제가 있습니다.

1. **ingress-nginx는 은퇴했습니다 (2026년 3월).** 쿠버네티스 SIG Network가 유지보수 종료를 발표했고, 그 뒤로는
   릴리스도 보안 패치도 없습니다. `Ingress` API 자체는 남아 있지만(더 이상 발전하지 않음), 새 라우팅 표준은
   **Gateway API**(`Gateway` + `HTTPRoute`)입니다. 이 실습은 HTTPRoute를 주로 쓰고, 과정의 Ingress는 레거시로 함께 둡니다.
2. **`rewrite-target: /` 버그.** 이 주석은 일치한 경로를 통째로 `/`로 바꿔서 보냅니다. `/api/users/42`가
   서비스에는 `/`로 도착하므로, 진짜 API라면 모든 경로가 404가 됩니다. 과정에서는 nginx가 고정 응답을 돌려줬기에
   드러나지 않았을 뿐입니다. `manifests/01-networking/ingress.yaml`에서는 이 주석을 뺐습니다.
"""),
    code("""
lab.routes()  # 경로 -> 서비스, HTTPRoute와 Ingress가 선언한 것, 이 모드에서 닿는 URL
"""),
    md("""
`rewrite-target: /`가 하던 일을 직접 재현해 봅시다: 같은 서비스에 원래 경로와 `/`로 바뀐 경로를 보냅니다.
"""),
    code("""
for path in ["/api/queries/users", "/"]:
    r = lab.http("query-service").get(path)
    print(f"GET {path:<20} -> {r.status_code}  {r.text[:60]}")
assert lab.http("query-service").get("/").status_code == 404  # 경로를 잃으면 API도 잃는다
"""),
    md("""
## Step 3: 모든 경로 호출하기

과정의 `curl -s -H "Host: api.local" http://nginx-ingress-controller/api/users`에 해당합니다.
클러스터 모드에서는 **Gateway**를 통해(`Host: api.local`), local 모드에서는 각 서비스의 주소로 보내고,
그 주소의 `/healthz`에게 "너 누구니?"를 물어 올바른 서비스가 답했는지 확인합니다.
명령 경로에는 빈 본문을 보내므로 422(검증 실패)가 정답입니다: 아무것도 쓰지 않고 응답만 확인합니다.
"""),
    code("""
routes_called = pd.DataFrame(checks.probe_routes(lab))
routes_called
"""),
    md("""
## 보기: 서비스 맵

`labkit.lab.topology.call_graph()`는 서비스 레지스트리(`ecommerce/services/registry.py`)에서 호출 관계를 읽습니다.
주황색은 게이트웨이 라우트, 파란색은 서비스 간 HTTP 호출, 갈색 점선은 데이터베이스 접근입니다.
NetworkPolicy는 바로 이 선들만 허용하도록 만들어져 있습니다.
"""),
    code("""
from labkit.lab.topology import call_graph

plots.service_map(call_graph())
"""),
    md("""
## Step 4: NetworkPolicy — 허용된 길만 열린다

`manifests/01-networking/networkpolicies.yaml`은 먼저 네임스페이스의 **모든 트래픽을 막고**(`default-deny-all`),
실제 호출 경로 하나하나만 허용합니다. 아래 표는 그 매니페스트를 읽은 것입니다.
"""),
    code("""
policies = checks.network_policy_rules()
print(f"{policies['policy'].nunique()} policies, {len(policies)} rules")
policies[policies["policy"].isin(["default-deny-all", "allow-ingress-postgres", "allow-ingress-command-service"])]
"""),
    md("""
**막힌 호출 보기.** 과정의 `load-tester` 파드(네임스페이스 `testing`)는 서비스들을 부를 수 있지만(허용 규칙이 있음),
PostgreSQL에는 닿을 수 없습니다(허용 목록에 없음). 클러스터 모드에서는 실제로 `kubectl exec`로 두 호출을 해 봅니다.

local 모드에서는 모든 서비스가 같은 컴퓨터의 `127.0.0.1` 프로세스라서 누구나 누구에게나 연결할 수 있습니다.
NetworkPolicy는 클러스터의 CNI(kind의 kindnet, Calico, Cilium, EKS의 VPC CNI)가 **패킷 단계에서** 집행하는 것이라
local 모드에는 대응물이 없습니다. `LABKIT_MODE=cluster`로 같은 셀을 실행하면 막히는 것을 볼 수 있습니다.
"""),
    code("""
if lab.mode == "cluster":
    ns = lab.settings.namespace
    code_ok, out_ok = checks.load_tester(lab, "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                         f"http://query-service.{ns}.svc.cluster.local/api/queries/users")
    print(f"allowed: load-tester -> query-service      exit={code_ok} http={out_ok}")
    code_denied, out_denied = checks.load_tester(lab, "curl", "-sS", "-m", "3",
                                                 f"http://postgres.{ns}.svc.cluster.local:5432/")
    print(f"denied:  load-tester -> postgres:5432      exit={code_denied} {out_denied[-120:]}")
    # 28 = timeout (packets dropped), 7 = refused: either way, NetworkPolicy stopped it.
    # 52 ("empty reply") would mean PostgreSQL was reached: the CNI does not enforce policies.
    assert code_ok == 0 and code_denied in (7, 28), "NetworkPolicy is not enforced by this cluster's CNI"
else:
    print("local mode: every service is a process on 127.0.0.1; NetworkPolicy is enforced by a "
          "cluster's CNI, so there is nothing to block here. Run with LABKIT_MODE=cluster to see "
          "load-tester -> postgres:5432 time out.")
"""),
    *checkpoint_cells("Kubernetes Native", "Kubernetes Native 구성"),
    md("""
## 💡 회고
- **Kubernetes Native**: 순수 Kubernetes 리소스(Service, DNS, HTTPRoute, NetworkPolicy)만으로 구현한 소감은?
- Service Mesh(Day 2)가 주는 것(mTLS, 고급 라우팅)과 비교해, 지금 무엇이 부족하다고 느꼈나요?
- 과정의 `rewrite-target: /` 같은 설정 하나가 왜 모든 경로를 깨뜨릴 수 있을까요? 그런 실수는 어떻게 미리 잡을까요?
"""),
]


# ---- 02-saga ---------------------------------------------------------------------------------------------
NB_02 = [
    md("""
# 02. Saga 패턴: 분산 트랜잭션과 보상 트랜잭션 🔄

## 🎯 목표
- 주문 하나가 **네 서비스**(user, order, inventory, payment)에 걸친 트랜잭션이 되는 과정을 단계별로 본다
- 단계가 실패하면 이미 한 일을 **역순으로 되돌리는(보상)** 것을 실제 잔액과 재고로 확인한다
- **거절**(결제 거절, 재고 부족, 없는 사용자)과 **일시적 장애**(타임아웃, 503)가 어떻게 다르게 처리되는지 타임라인으로 본다
- 오케스트레이터를 **죽여도** 사가가 끝까지 가는 이유와, 그것이 쿠버네티스 **Job + `backoffLimit`** 과 어떻게 맞물리는지 이해한다
- 마지막에 시스템 전체의 **불변식**(돈 보존, 재고 보존, 확정 ⇔ 결제+예약, 이중 결제 없음)을 검사한다

> 과정 Step 2 (30분) — 과정에서는 order-service와 payment-service가 nginx의 고정 JSON이었고, 사가 오케스트레이터 Job은
> `echo "Step 1: Validate User - SUCCESS"`였습니다. 여기서는 주문이 만들어지고, 재고가 예약되고, 돈이 실제로 움직입니다.
"""),
    md("""
## 💡 개념: 오케스트레이션 사가

```mermaid
graph LR
    START([주문 요청<br/>SagaStarted]) --> V
    subgraph "정방향 단계 (actions)"
        V["1 validate_user<br/>user-service"] --> C["2 create_order<br/>order-service: PENDING"]
        C --> R["3 reserve_stock<br/>inventory-service"]
        R --> P["4 charge_payment<br/>payment-service"]
        P --> K{{"5 confirm_order<br/>order-service: CONFIRMED<br/>피벗 (pivot)"}}
    end
    K --> DONE([SagaCompleted])
    subgraph "보상 트랜잭션 (compensations, 역순)"
        RF["refund_payment"] --> RS["release_stock"] --> CO["cancel_order"]
    end
    P -. 되돌리기 .-> RF
    R -. 되돌리기 .-> RS
    C -. 되돌리기 .-> CO
    CO --> COMP([SagaCompensated])
    style K fill:#ff9800
    style RF fill:#ffccbc
    style RS fill:#ffccbc
    style CO fill:#ffccbc
    style DONE fill:#c8e6c9
    style COMP fill:#ffe0b2
```

- **오케스트레이터**(`saga-orchestrator`)가 단계를 차례로 부릅니다. 각 서비스는 **자기 데이터만** 바꿉니다.
  데이터베이스 하나의 트랜잭션(잠금, 롤백)이 없으니, 실패하면 **보상 트랜잭션**으로 되돌립니다.
- 단계 k가 실패하면, 성공한 단계를 **역순으로** 보상합니다. `validate_user`는 아무것도 바꾸지 않으므로 보상이 없습니다.
- **피벗(pivot)**: `confirm_order`가 성공하면 더는 되돌리지 않습니다(확정된 주문의 취소는 409 `already_confirmed`).
  그래서 실패할 수 있는 일(재고, 결제)을 모두 피벗 **앞에** 두고, 피벗 자체는 일시적 장애에도 포기하지 않고 끝까지 재시도합니다.
- **실패는 두 종류**입니다. *거절*(잔액 부족, 재고 부족, 없는 사용자)은 답이므로 재시도하지 않고 곧바로 보상합니다.
  *일시적 장애*(타임아웃, 503)는 답이 아니므로 같은 요청을 지수 백오프로 재시도하고, 단계 마감(5초)이 지나면
  "결과를 모름"으로 보고 **그 단계까지** 보상합니다(결제가 됐을 수도 있으니 환불까지).
- **기록 먼저, 실행은 나중**: 모든 결정은 사가 자신의 스트림 `saga-<id>`에 **먼저** 저장됩니다. 이 스트림이 사가 상태의 전부입니다.
- 모든 요청은 **멱등 키** `<saga id>:<step>`를 가집니다. 같은 요청을 다시 보내도 참가자는 처음 답을 돌려줄 뿐, 두 번 결제하지 않습니다.
"""),
    SETUP,
    md("""
다섯 단계와 각 단계가 보내는 실제 HTTP 요청입니다 (`ecommerce.domain.saga`에서 읽은 것: 오케스트레이터가 쓰는 바로 그 정의).
"""),
    code("""
import pandas as pd

from ecommerce.domain.saga import ORDER_SAGA, SagaState, request_for

example = SagaState("<saga>", order_id="<order>", user_id="<user>")


def http(action):
    request = request_for(action, example)
    return f"{request.method} {request.path}"


pd.DataFrame([{"#": i, "step": st.name, "service": st.service, "request": http(st.name),
               "idempotency key": request_for(st.name, example).idempotency_key,
               "compensation": st.compensation or "-",
               "compensation request": http(st.compensation) if st.compensation else "-",
               "pivot": "✔" if st.pivot else ""}
              for i, st in enumerate(ORDER_SAGA, 1)])
"""),
    md("""
## 과정의 Job은 무엇을 증명했나?

과정 Step 2-3의 "사가 오케스트레이터"는 이 Job이었습니다.

```yaml
command: ['sh', '-c']
args:
- |
  echo "Step 1: Validate User - SUCCESS"
  echo "Step 2: Create Order - SUCCESS"
  echo "Step 3: Process Payment - SUCCESS"
restartPolicy: Never
backoffLimit: 3
```

- 어떤 서비스도 부르지 않습니다. 결제 서비스가 꺼져 있어도 `SUCCESS`를 찍습니다.
- 실패할 수 없으니 보상할 일도 없습니다. 과정의 "보상 트랜잭션 테스트"(`kubectl create job compensation-test --from=job/saga-orchestrator`)는 같은 echo를 한 번 더 찍을 뿐입니다.
- 결과(`/shared/saga-result.json`)는 파드와 함께 사라지는 `emptyDir`에 씁니다. 파드가 죽으면 어디까지 했는지 아무도 모릅니다.
- `backoffLimit: 3`은 실패한 파드를 다시 띄웁니다. 기록이 없으니 진짜 사가였다면 **처음부터 다시** 결제했을 것입니다.

직접 확인합니다: 과정의 스크립트를 실행하고, 그동안 결제·주문 서비스에 무슨 일이 있었는지 셉니다.
"""),
    code("""
import shutil
import subprocess

COURSE_JOB = '''
echo "=== Saga Transaction Started ==="
echo "Step 1: Validate User - SUCCESS"
echo "Step 2: Create Order - SUCCESS"
echo "Step 3: Process Payment - SUCCESS"
echo "=== Saga Transaction Completed ==="
'''


def counts():
    return (lab.http("payment-service").get("/api/payments").json()["total"],
            lab.http("order-service").get("/api/orders").json()["total"])


before = counts()
if shutil.which("sh"):
    print(subprocess.run(["sh", "-c", COURSE_JOB], capture_output=True, text=True).stdout)
else:  # no POSIX shell (Windows): the script only echoes anyway
    print("\\n".join(line[6:-1] for line in COURSE_JOB.strip().splitlines()))
after = counts()
print(f"payments recorded by payment-service: {before[0]} -> {after[0]}")
print(f"orders recorded by order-service:     {before[1]} -> {after[1]}")
assert after == before  # "SUCCESS", and nothing happened anywhere
"""),
    md("""
이 실습의 Job은 같은 이름(`saga-orchestrator`), 같은 `backoffLimit: 3`이지만 **진짜 일을 합니다**:
`python -m ecommerce.saga run --pending`은 아직 끝나지 않은 모든 사가를 스트림에서 읽어 끝까지 진행(또는 보상)한 뒤 종료합니다.
계속 도는 변형(`run --follow`)은 Deployment `saga-orchestrator-follow`이고, local 모드의 `saga-orchestrator` 프로세스가 바로 이것입니다.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
from labkit.runtime.manifests import load_step

saga_step = {o["metadata"]["name"]: o for o in load_step("02-saga")}
job = saga_step["saga-orchestrator"]
follow = saga_step["saga-orchestrator-follow"]
assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 3
assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["run", "--pending"]
assert follow["kind"] == "Deployment"
assert follow["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["run", "--follow"]
"""),
    md("""
## Step 1: 고객과 상품 (이전 상태 기록)

두 고객을 준비합니다: **alice**는 잔액이 넉넉하고, **bob**은 10.00(1,000센트)뿐입니다.
금액은 모두 **정수 센트**입니다(`8900` = 89.00). 계좌는 payment-service, 재고는 inventory-service가 각자 관리합니다.
맨 끝에서 비교하도록 지금 상태를 기록해 둡니다.
"""),
    code("""
from labkit.lab.scenarios import ALICE, BOB, POOR_BALANCE, ensure_customer

ensure_customer(lab, ALICE)                # user-service의 사용자 + payment-service의 계좌
ensure_customer(lab, BOB, POOR_BALANCE)
accounts_before, stock_before = lab.accounts(), lab.stock()
display(accounts_before[["account_id", "balance", "initial_balance"]])
stock_before[["sku", "name", "price", "available", "reserved", "sold", "initial"]]
"""),
    md("""
## Step 2: 정상 주문 (happy path)

`lab.saga.place_order`는 사가 스트림에 `SagaStarted` 하나를 쓰고 바로 돌아옵니다. 나머지는 **오케스트레이터 프로세스**가 합니다.
`lab.saga.wait`는 사가가 끝날 때까지 기다렸다가 스트림에서 접은(fold) 상태를 돌려줍니다.
"""),
    code("""
from ecommerce.saga import format_view

happy_id = lab.saga.place_order(ALICE, [("MOUSE-WL", 2)])  # wireless mouse x2 (plenty in stock)
happy = lab.saga.wait(happy_id)
print(format_view(happy))
assert happy["status"] == "completed"
"""),
    md("""
사가의 말만 믿지 말고, **각 참가자에게 직접** 물어봅시다. 주문은 확정(CONFIRMED), 재고는 예약(RESERVED), 결제는 완료(CHARGED)여야 합니다.
"""),
    code("""
pd.DataFrame(checks.participant_records(lab, happy["order_id"], ALICE))
"""),
    code("""
plots.saga_gantt(lab.saga.timeline(happy_id),
                 title="정상 주문: 다섯 단계가 차례로 성공 (각 막대 = 한 번의 HTTP 호출)")
"""),
    md("""
## Step 3: 사가 스트림 — 결정은 실행보다 먼저 기록된다

사가의 상태는 오케스트레이터의 메모리가 아니라 이벤트 저장소의 스트림 `saga-<id>`에 있습니다.
`StepStarted`("이제 3단계를 한다")가 먼저 쓰이고, 그다음에 참가자를 부르고, 결과(`StepSucceeded`)를 씁니다.
`owner`는 그 결정을 내린 오케스트레이터 프로세스입니다.
"""),
    code("""
stream = lab.events(stream=f"saga-{happy_id}")
stream = stream.assign(step=stream["data"].map(lambda d: d.get("step", "")),
                       attempt=stream["data"].map(lambda d: d.get("attempt", "")),
                       owner=stream["metadata"].map(lambda m: m.get("owner", "")))
stream[["position", "version", "event_type", "step", "attempt", "owner", "recorded_at"]]
"""),
    md("""
전역 로그에서 이 사가의 결정(`decision`, 오케스트레이터가 씀)과 참가자들이 남긴 결과(`effect`, 각 서비스가 자기 스트림에 씀)를
위치(position) 순서로 섞어 봅니다. 모든 `effect` 바로 앞에 그것을 시작한 `StepStarted`가 있습니다.
그래서 오케스트레이터가 어느 순간에 죽어도, 새 오케스트레이터는 스트림만 읽고 **어디까지 했는지** 압니다.
"""),
    code("""
log = checks.saga_log(lab, happy_id)
assert checks.decisions_first(log) == [], checks.decisions_first(log)
log
"""),
    md("""
같은 사가를 **CQRS의 읽기 쪽**(query-service의 사가 뷰)에서도 볼 수 있습니다. 사가 프로젝션이 같은 이벤트로 만든 조회 모델입니다.
"""),
    code("""
lab.wait_for_projection(int(stream["position"].max()), "sagas")
view = lab.query(f"sagas/{happy_id}")
{k: view[k] for k in ("saga_id", "status", "amount", "duration_ms", "source", "checkpoint")}
"""),
    md("""
## Step 4: 거절 → 보상 트랜잭션

`lab.fire(시나리오)`는 필요한 준비를 한 뒤 사가 하나를 시작하고 그 id를 돌려줍니다. 가짜 실패는 없습니다:
거절은 참가자 자신의 규칙에서 나옵니다.

| 시나리오 | 무슨 일이 일어나나 | 예상 보상 |
|---|---|---|
| `payment-declined` | bob(잔액 10.00)이 모니터(329.00)를 주문 → payment-service가 409 `declined` | release_stock → cancel_order |
| `out-of-stock` | 헤드셋을 재고보다 1개 더 주문 → inventory-service가 409 `insufficient_stock` | cancel_order |
| `invalid-user` | 아무도 등록하지 않은 사용자 → user-service가 404 | 없음 (아무것도 안 바뀜) |

세 사가는 서로 다른 고객과 상품을 쓰므로 **동시에** 시작합니다.
"""),
    code("""
refusals = {name: lab.fire(name) for name in ("payment-declined", "out-of-stock", "invalid-user")}
views = {name: lab.saga.wait(sid) for name, sid in refusals.items()}
assert all(v["status"] == "compensated" for v in views.values())
pd.DataFrame([{"scenario": name, "saga": v["saga_id"], "user": v["user_id"],
               "failed at": v["failed_step"], "reason": v["failure"],
               "succeeded before": ", ".join(a for a in v["actions"] if v[a]["status"] == "succeeded"),
               "compensated (recorded order)": " → ".join(checks.compensation_order(lab, v["saga_id"]))}
              for name, v in views.items()])
"""),
    code("""
plots.saga_gantt(lab.saga.timeline(list(refusals.values())),
                 title="거절 세 가지: 실패한 단계(빨강) 뒤에는 역순 보상(빗금)만")
"""),
    md("""
보상된 주문을 참가자들에게 다시 물어봅니다. 주문은 취소(CANCELLED), 예약은 해제(RELEASED), 결제는 없음(404)이어야 합니다.
"""),
    code("""
declined = views["payment-declined"]
pd.DataFrame(checks.participant_records(lab, declined["order_id"], declined["user_id"]))
"""),
    md("""
## Step 5: 일시적 장애 → 재시도, 그리고 마감

이번에는 참가자가 **답을 못 하는** 경우입니다. 장애는 참가자의 `/faults` 엔드포인트로 실제로 주입합니다.

- `inventory-flaky`: inventory-service가 예약 요청에 503을 세 번 돌려줍니다 → 같은 멱등 키로 재시도 → 네 번째에 성공, 사가는 **완료**.
- `payment-timeout`: payment-service가 요청마다 요청 타임아웃(1초)보다 늦게 답합니다 → 재시도를 거듭하다 단계 마감(5초)을 넘김 →
  결제가 **됐는지 모르므로** 환불까지 포함해 역순 보상. 약 6초 걸립니다.

두 장애는 다른 사가의 요청도 가로챌 수 있으므로 하나씩 실행합니다. `payment-timeout`의 결제 기록은 `REFUNDED`(늦게 도착한 결제를 환불)이거나
`VOIDED`(환불이 결제보다 먼저 도착: 주문을 무효로 표시해 늦은 결제를 거절)입니다. 어느 쪽이든 돈은 돌아옵니다.
"""),
    code("""
flaky_id = lab.fire("inventory-flaky", lines=[("MOUSE-WL", 1)])
flaky = lab.saga.wait(flaky_id)
print(format_view(flaky))
assert flaky["status"] == "completed" and flaky["reserve_stock"]["attempts"] > 1
"""),
    code("""
import time

started = time.perf_counter()
timeout_id = lab.fire("payment-timeout", lines=[("MOUSE-WL", 1)])
slow = lab.saga.wait(timeout_id, timeout=60)
lab.faults.clear()  # drop any delay the scenario armed but the saga did not use
print(format_view(slow))
print(f"\\nended after {time.perf_counter() - started:.1f}s")
assert slow["status"] == "compensated" and slow["failure"] == "deadline_exceeded"
pd.DataFrame(checks.participant_records(lab, slow["order_id"], ALICE))
"""),
    code("""
plots.saga_gantt(lab.saga.timeline([flaky_id, timeout_id]),
                 title="일시적 장애: 재시도(노랑) 뒤 성공, 또는 마감을 넘겨 환불까지 보상")
"""),
    md("""
## Step 6: 오케스트레이터가 죽으면? — 스트림에서 이어서 한다

`orchestrator-crash`는 오케스트레이터 프로세스가 3단계(`reserve_stock`)의 성공을 기록한 **바로 뒤에** 스스로 `SIGKILL`로 죽게 합니다.
정리도, 플러시도 없이 `kill -9`처럼 죽습니다. 새 프로세스(쿠버네티스라면 Deployment나 Job 컨트롤러가 띄우는 새 파드)는
스트림을 읽고 4단계부터 이어 갑니다. 진행 중이던 요청은 같은 멱등 키로 다시 보내므로 두 번 결제되지 않습니다.
"""),
    code("""
def orchestrator_pid():
    if lab.mode != "local":
        return "(pods: see lab.status())"
    pid = lab.status().set_index("service").loc["saga-orchestrator", "pid"]
    return int(pid) if pid == pid else None  # NaN: not running


pid_before = orchestrator_pid()
crash_id = lab.fire("orchestrator-crash", step=3, lines=[("MOUSE-WL", 1)])
crashed = lab.saga.wait(crash_id)
print(f"saga-orchestrator pid: {pid_before} -> {orchestrator_pid()}")
print(format_view(crashed))
assert crashed["status"] == "completed"
"""),
    md("""
스트림의 `owner`를 보면 **두 프로세스**가 이 사가를 몰았습니다. 첫 번째는 3단계 기록 직후에 사라졌고, 두 번째가 그 뒤를 이었습니다.
"""),
    code("""
crash_log = lab.events(stream=f"saga-{crash_id}")
crash_log["owner"] = crash_log["metadata"].map(lambda m: m.get("owner", "(lab.saga.place_order)"))
crash_log["step"] = crash_log["data"].map(lambda d: d.get("step", ""))
drivers = list(crash_log["owner"].iloc[1:].unique())
assert len(drivers) == 2, drivers  # two orchestrator processes drove this saga
crash_log[["version", "event_type", "step", "owner", "recorded_at"]]
"""),
    code("""
timeline = lab.saga.timeline(crash_id)
fig = plots.saga_gantt(timeline,
                       title="오케스트레이터 크래시: 새 프로세스가 스트림을 읽고 4단계부터 이어서 끝낸다")
t0 = timeline["start"].min()
died = crash_log.loc[crash_log["owner"] == drivers[0], "recorded_at"].max()
resumed = crash_log.loc[crash_log["owner"] == drivers[1], "recorded_at"].min()
ax = fig.axes[0]
ax.axvspan((died - t0).total_seconds(), (resumed - t0).total_seconds(), color="#c62828", alpha=0.15,
           label="오케스트레이터 없음 (SIGKILL 뒤 새 프로세스가 뜰 때까지)")
ax.legend(loc="lower right")
fig
"""),
    md("""
### Job + `backoffLimit` = 내구성 있는 사가

쿠버네티스 Job은 파드가 실패하면 `backoffLimit`(여기서 3)번까지 **새 파드**를 띄웁니다. 과정의 echo Job에서는 의미가 없었지만,
상태가 스트림에 있는 오케스트레이터라면 바로 그것이 **크래시 복구**입니다. 새 파드의 `run --pending`이 끝나지 않은 사가를 찾아 이어 갑니다.

직접 해 봅니다: 계속 도는 오케스트레이터를 멈추고(local 모드; 클러스터에서는 follow Deployment가 계속 돕니다), 결제 기록 직후에 죽도록 한 주문을 넣은 뒤,
Job 컨트롤러가 하듯 **성공할 때까지 최대 4개의 파드**(첫 실행 + backoffLimit 3)를 차례로 실행합니다.
"""),
    code("""
from labkit.lab import LabError

if lab.mode == "local" and lab.status().set_index("service").loc["saga-orchestrator", "status"] == "running":
    lab.kill("saga-orchestrator")  # nobody drives sagas now, except the Job below
job_saga = lab.saga.place_order(ALICE, [("MOUSE-WL", 1)], crash_after="charge_payment:StepSucceeded")
print("before the Job:", lab.saga.status(job_saga)["status"], "(SagaStarted only)")

pods = []
for pod in range(1, 1 + 1 + 3):  # first pod + backoffLimit: 3
    try:
        output = lab.run_job("saga-orchestrator")  # python -m ecommerce.saga run --pending
    except LabError as exc:  # the pod died: SIGKILL -> exit -9
        pods.append({"pod": pod, "result": "Failed", "output": str(exc).splitlines()[0]})
        continue
    pods.append({"pod": pod, "result": "Succeeded", "output": output.strip().splitlines()[-1]})
    break
job_view = lab.saga.wait(job_saga)
print("after the Job: ", job_view["status"])
assert job_view["status"] == "completed" and pods[-1]["result"] == "Succeeded"
pd.DataFrame(pods)
"""),
    code("""
_ = lab.up()  # 계속 도는 오케스트레이터를 다시 띄운다 (쿠버네티스라면 Deployment가 하는 일)
lab.status()
"""),
    md("""
## 보기: 잔액과 재고, 사가 전후

Step 1에서 기록한 상태와 지금을 비교합니다. 돈은 **계좌 사이에서만** 움직입니다: alice가 낸 만큼 merchant가 받았고,
bob의 잔액은 그대로입니다(결제가 거절되었으니). 재고는 확정된 주문만큼만 줄었고, 보상된 주문의 예약은 돌아왔습니다.
"""),
    code("""
accounts_after, stock_after = lab.accounts(), lab.stock()
balances = accounts_before[["account_id", "balance"]].merge(
    accounts_after[["account_id", "balance"]], on="account_id", how="outer", suffixes=(" before", " after"))
balances["change"] = balances["balance after"] - balances["balance before"]
assert accounts_after["balance"].sum() == accounts_after["initial_balance"].sum()  # money is conserved
balances
"""),
    code("""
stock = stock_before[["sku", "available", "reserved", "sold"]].merge(
    stock_after[["sku", "available", "reserved", "sold"]], on="sku", suffixes=(" before", " after"))
stock["available change"] = stock["available after"] - stock["available before"]
stock
"""),
    code("""
plots.before_after(accounts_before, accounts_after, "account_id", "balance",
                   "계좌 잔액: 사가 전후 (돈은 계좌 사이에서만 이동)", ylabel="잔액 (센트)")
"""),
    code("""
fig = plots.before_after(stock_before, stock_after, "sku", "available",
                         "가용 재고: 사가 전후 (보상된 주문의 예약은 돌아온다)", ylabel="가용 재고 (개)")
fig.axes[0].legend(loc="upper left")  # keep the change label of the last SKU visible
fig
"""),
    md("""
## 불변식: 시스템 전체에 대고 검사하기

하나하나의 사가가 아니라, 지금까지 이 실습에서 실행된 **모든** 사가에 대해 참이어야 하는 것들입니다 (`labkit.ops.invariants`).
각 서비스의 API와 이벤트 로그를 읽어 비교합니다.
"""),
    code("""
invariants = checks.check_invariants(lab)  # 05-checkpoints의 Saga 체크포인트와 같은 함수
display(checks.report([invariants]))
checks.assert_ok([invariants])
"""),
    md("""
## 위젯: 직접 주문하고, 장애를 일으켜 보기

주문 폼은 `lab.saga.place_order(user, [(sku, n)])`를, 장애 버튼은 `lab.fire(이름)`을 부릅니다.
비싼 상품을 bob으로 주문하거나, 재고보다 많이 주문해 보세요. 그다음 위의 Gantt 셀을 다시 실행하면 방금 것이 보입니다
(`lab.saga.timeline()`은 인자가 없으면 최근 10개 사가).
각 위젯 바로 아래의 쌍둥이 셀은 같은 함수를 그냥 호출합니다.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
from labkit.workbook import widgets

widgets.order_form(lab)
"""),
    code("""
# 위젯의 쌍둥이: 주문 버튼이 부르는 것과 같은 함수
twin = lab.saga.wait(lab.saga.place_order(ALICE, [("MOUSE-WL", 1)]))
print(format_view(twin))
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
widgets.failure_buttons(lab)
"""),
    code("""
# 위젯의 쌍둥이: 버튼 하나 = lab.fire(이름) 한 번
print(format_view(lab.saga.wait(lab.fire("out-of-stock"))))
"""),
    *checkpoint_cells("Saga", "Saga 패턴"),
    md("""
## 💡 회고
- **보상은 되돌리기가 아닐 때가 있습니다.** 이미 보낸 확인 메일, 출고된 상품의 보상은 무엇일까요? (의미적 보상: 사과 메일, 반품 절차)
- 피벗을 결제 **앞**으로 옮기면(먼저 확정하고 나중에 결제) 무엇이 깨질까요?
- 이 실습은 **오케스트레이션**(지휘자 하나)입니다. 각 서비스가 이벤트를 듣고 다음 일을 하는 **코레오그래피**와 비교해,
  실패 추적과 보상은 어느 쪽이 쉬울까요? 위의 사가 스트림 같은 한 곳의 기록이 없다면요?
- 과정의 Job이 `SUCCESS`를 찍을 때 알 수 없던 것 가운데, 여러분 팀의 배치 Job도 모르는 것은 무엇인가요?
"""),
]


# ---- 03-cqrs -----------------------------------------------------------------------------------------
NB_03 = [
    md("""
# 03. CQRS: 쓰기와 읽기를 나눈다 📊

## 🎯 목표
- **명령(Command)** 은 command-service로만, **조회(Query)** 는 query-service의 조회 모델에서만 일어나는 것을 확인한다
- **최종 일관성**을 눈으로 본다: 명령이 조회에 보이기까지의 지연을 재고, 일부러 낡은 읽기를 만든 뒤 따라잡는 것을 본다
- 두 사람이 동시에 고칠 때 생기는 **409 충돌**과 `expected_version`으로 해결하는 법을 익힌다
- 왜 query-service만 따로(3개) 확장하는지 이해한다

> 과정 Step 3 (30분) — 과정에서는 command-service가 `"status": "accepted"`를, query-service가 고정된 사용자 2명을 돌려줬습니다.
> 여기서는 명령이 이벤트가 되고, 이벤트가 조회 모델이 됩니다.
"""),
    md("""
## 💡 개념: 명령과 조회의 분리

```mermaid
graph LR
    C[클라이언트] -->|POST /api/commands/*| CS[command-service<br/>쓰기 x2]
    CS -->|append + expected_version| ES[(Event Store)]
    ES -->|catch-up 구독| EP[event-processor<br/>projection]
    EP -->|materialized view + checkpoint| RM[(Read Model)]
    C -->|GET /api/queries/*| QS[query-service<br/>읽기 x3]
    QS --> RM
    style CS fill:#2196f3
    style QS fill:#9c27b0
    style ES fill:#795548
```

- 명령의 응답에는 그 이벤트가 로그에 놓인 **`position`** 이 있습니다.
- 조회의 응답에는 조회 모델이 어디까지 반영했는지 **`checkpoint`** 가 있습니다.
- `checkpoint >= position`이면 내가 쓴 것이 보입니다. 그 전에는 **낡은(stale) 읽기**입니다. 이것이 최종 일관성입니다.
"""),
    SETUP,
    md("""
## Step 1: 명령 보내기

과정의 `curl -X POST .../api/commands/create-user`입니다. 응답의 `status: accepted`, `position`, `version`을 보세요.
"""),
    code("""
import uuid

tag = uuid.uuid4().hex[:6]
created = lab.command("create-user", name="김민수", email=f"minsu.{tag}@example.com", tier="premium")
created
"""),
    code("""
user_id = created["user_id"]
updated = lab.command("update-user", user_id=user_id, email=f"minsu.kim.{tag}@example.com")
updated
"""),
    md("""
## Step 2: 조회하기

과정의 `/api/queries/users`, `/api/queries/user-stats`입니다. `source: materialized_view`와 `checkpoint`를 보세요.
방금 쓴 것이 보이도록 먼저 조회 모델이 그 위치까지 따라올 때까지 기다립니다.
"""),
    code("""
waited = lab.wait_for_projection(updated["position"])
print(f"projection caught up after {waited * 1000:.1f} ms")
lab.query(f"users/{user_id}")
"""),
    code("""
lab.query("user-stats")
"""),
    code("""
import pandas as pd

page = lab.query("users", limit=5)
print("source:", page["source"], "| checkpoint:", page["checkpoint"], "| total:", page["total"])
pd.DataFrame(page["users"])
"""),
    md("""
## Step 3: 최종 일관성 재기

명령 20개를 하나씩 보내고, 각각 query-service에 보일 때까지 걸린 시간을 잽니다.
회색은 command-service가 명령을 처리한 시간, 파란색은 그 뒤 조회 모델에 반영되기까지의 지연입니다.
"""),
    code("""
lag = lab.projection_lag(20)
lag[["command_ms", "lag_ms"]].describe().round(1)
"""),
    code("""
plots.projection_lag(lag)
"""),
    md("""
## Step 4: 일부러 낡은 읽기 만들기

조회 모델을 만드는 **event-processor**를 죽이고(`kill -9`), 명령을 하나 보낸 뒤 읽어 봅니다.
명령은 성공하지만(쓰기 쪽은 멀쩡함), 조회는 옛날 값을 돌려줍니다. 체크포인트가 명령의 위치보다 뒤에 있습니다.
"""),
    code("""
killed = lab.kill("event-processor")  # 프로젝션을 만드는 프로세스를 죽인다
renamed = lab.command("update-user", user_id=user_id, name="김민수 (개명)")
stale = lab.query(f"users/{user_id}")
print("command wrote at position :", renamed["position"])
print("read model checkpoint     :", stale["checkpoint"])
print("name the query returns    :", stale["name"])
if lab.mode == "local":  # in a cluster the Deployment may restart the pod before we read
    assert stale["checkpoint"] < renamed["position"] and stale["name"] != "김민수 (개명)"
lab.checkpoints()  # behind: 조회 모델이 로그 끝에서 몇 칸 뒤에 있나
"""),
    md("""
이제 `lab.up()`으로 죽은 것만 다시 띄웁니다 (쿠버네티스라면 Deployment가 알아서 하는 일).
프로세서는 **체크포인트부터** 이어서 처리하므로, 놓친 이벤트 없이 따라잡습니다.
"""),
    code("""
_ = lab.up()
waited = lab.wait_for_projection(renamed["position"])
fresh = lab.query(f"users/{user_id}")
print(f"caught up {waited * 1000:.0f} ms after the restart: name = {fresh['name']}, checkpoint = {fresh['checkpoint']}")
assert fresh["name"] == "김민수 (개명)"
lab.checkpoints()
"""),
    md("""
## Step 5: 동시에 고치면? — 409와 `expected_version`

두 사람(A, B)이 같은 사용자를 같은 버전에서 읽고 동시에 고칩니다. 이벤트 저장소는 **기대한 버전이 지금 버전과
같을 때만** 이벤트를 붙입니다. 먼저 온 A는 성공하고, B는 `409 version_conflict`를 받습니다. 덮어쓰기는 없습니다.
"""),
    code("""
commands = lab.http("command-service")
version = commands.get(f"/api/commands/users/{user_id}/version").json()["version"]  # 둘 다 이 버전을 읽었다
first = commands.post("/api/commands/update-user",
                      json={"user_id": user_id, "name": "A가 고친 이름", "expected_version": version})
second = commands.post("/api/commands/update-user",
                       json={"user_id": user_id, "name": "B가 고친 이름", "expected_version": version})
print("A:", first.status_code, first.json()["status"], "-> version", first.json()["version"])
print("B:", second.status_code, second.json())
assert (first.status_code, second.status_code) == (202, 409)
"""),
    md("""
B가 할 일: **다시 읽고**(새 버전), 바꿀 내용을 다시 판단한 뒤 새 버전으로 재시도합니다.
"""),
    code("""
current = commands.get(f"/api/commands/users/{user_id}/version").json()["version"]
retry = lab.command("update-user", user_id=user_id, name="B가 고친 이름", expected_version=current)
print(f"B retried at version {current}: {retry['status']} -> version {retry['version']}")
"""),
    md("""
## Step 6: 왜 query-service만 3개인가

과정의 매니페스트도 command-service는 2개, query-service는 3개였습니다. 쇼핑몰은 목록·상세 조회가 쓰기보다 훨씬 많고,
query-service는 상태가 없어(조회 모델만 읽음) 복제본을 늘리기만 하면 됩니다. 쓰기는 스트림마다 버전 순서로
직렬화되므로 복제본을 늘려도 한 스트림의 처리량은 늘지 않습니다. 두 쪽이 분리되어 있으니 **각자 필요한 만큼** 확장합니다.
"""),
    code("""
import statistics
import time

from labkit.runtime.manifests import load_step


def timed_ms(fn, n):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


deployments = {o["metadata"]["name"]: o for o in load_step("03-cqrs") if o["kind"] == "Deployment"}
read_ms = timed_ms(lambda: lab.query("users", limit=20), 30)
write_ms = timed_ms(lambda: lab.command("create-user", name="Scale",
                                        email=f"scale.{uuid.uuid4().hex[:8]}@example.com"), 10)
pd.DataFrame([
    {"deployment": "command-service", "replicas": deployments["command-service"]["spec"]["replicas"],
     "database": "event store (PostgreSQL)", "median ms here": round(write_ms, 1)},
    {"deployment": "query-service", "replicas": deployments["query-service"]["spec"]["replicas"],
     "database": "read model (Redis)", "median ms here": round(read_ms, 1)},
])
"""),
    md("""
## 보기: 조회 모델의 상태 변화

사용자 3명을 만든 뒤 비활성화(deactivate) 명령을 보내고, 조회 모델(`user-stats`)의 상태별 사용자 수를 전후로 비교합니다.
"""),
    code("""
from labkit.workbook.figures import create_users, users_by_status

leavers = create_users(lab, 3, prefix="Leaver")
lab.wait_for_projection(leavers[-1]["position"], "user-stats")
before = users_by_status(lab)
for accepted in leavers:
    last = lab.command("deactivate-user", user_id=accepted["user_id"], reason="03-cqrs 실습")
lab.wait_for_projection(last["position"], "user-stats")
after = users_by_status(lab)
print("before:", before, "after:", after)
plots.projection_state(before, after, "사용자 상태별 수: 비활성화 명령 3개 전후 (조회 모델)",
                       xlabel="사용자 상태 (status)", ylabel="사용자 수")
"""),
    *checkpoint_cells("CQRS", "CQRS 패턴"),
    md("""
## 💡 회고
- **데이터 일관성 모델**: 방금 본 지연(수 ms ~ 수십 ms)이 사용자에게 문제가 되는 화면은 어디일까요? 어떻게 숨길까요
  (예: 명령 응답의 `position`을 기다렸다가 보여 주기)?
- **복잡도 분석**: CQRS가 시스템에 더한 것(프로세서, 체크포인트, 두 번째 데이터베이스)은 무엇이고, 그만한 가치가 있나요?
- 409를 받은 클라이언트는 언제 자동으로 재시도해도 되고, 언제 사용자에게 물어야 할까요?
"""),
]


# ---- 04-event-sourcing ------------------------------------------------------------------------------------
NB_04 = [
    md("""
# 04. Event Sourcing: 상태 대신 이벤트를 저장한다 🎭

## 🎯 목표
- 이벤트 로그를 **DataFrame으로** 훑어보고, 스트림 버전과 전역 위치(position)를 이해한다
- 한 사용자의 상태를 이벤트를 **fold**해서 직접 다시 만들고, 과거 시점으로 **시간 여행**한다
- event-processor를 **Job으로 한 번** 실행해 체크포인트가 로그 끝까지 가는 것을 본다 (과정의 CronJob)
- 조회 모델을 지우고 **재생(replay)** 해서 똑같이 다시 만든다 (초당 이벤트 수와 함께)
- 이벤트 스키마가 바뀔 때(v1 → v2) **업캐스터**가 옛 이벤트를 새 모양으로 읽어 주는 것을 본다

> 과정 Step 4 (25분) — 과정의 이벤트 저장소는 ConfigMap의 `events.json`이었고, 이벤트 프로세서는 `cat`이었습니다.
"""),
    md("""
## 💡 개념: 로그가 진실, 상태는 계산 결과

```mermaid
graph LR
    subgraph "stream user-42 (버전 1, 2, 3)"
        E1["v1 UserCreated<br/>position 7"] --> E2["v2 UserUpdated<br/>position 12"] --> E3["v3 UserDeactivated<br/>position 30"]
    end
    E3 -->|fold| S["현재 상태<br/>status=inactive, version=3"]
    E1 & E2 & E3 -->|projector| RM[(Read Model)]
    RM -.->|replay: 지우고 0부터 다시| RM
    style S fill:#4caf50
    style RM fill:#795548
```

- **스트림**(`user-<id>`)마다 버전이 1, 2, 3 ... 빈틈 없이 붙고, 로그 전체에는 **전역 위치**가 붙습니다.
- 이벤트는 지우거나 고치지 않습니다 (append-only). 현재 상태는 이벤트를 처음부터 적용(fold)한 결과입니다.
- 조회 모델은 언제든 지우고 로그에서 다시 만들 수 있는 **캐시**입니다.
"""),
    SETUP,
    md("""
## Step 1: 이력이 있는 사용자 만들기

가입 → 이메일 변경 → 이름 변경 → 탈퇴. 명령 하나가 이벤트 하나가 됩니다.
"""),
    code("""
import uuid

import pandas as pd

tag = uuid.uuid4().hex[:6]
c = lab.command("create-user", name="이서연", email=f"seoyeon.{tag}@example.com")
user_id = c["user_id"]
u1 = lab.command("update-user", user_id=user_id, email=f"seoyeon.lee.{tag}@example.com")
u2 = lab.command("update-user", user_id=user_id, name="이서연 (VIP)")
d = lab.command("deactivate-user", user_id=user_id, reason="탈퇴 요청")
pd.DataFrame([c, u1, u2, d])[["type", "event_type", "version", "position"]]
"""),
    md("""
## Step 2: 로그 훑어보기

과정의 `curl .../api/events`입니다. `lab.events()`는 event-store-api가 돌려주는 전역 로그를 DataFrame으로 만듭니다.
"""),
    code("""
head = int(lab.checkpoints()["head"].iloc[0])
recent = lab.events(after=max(0, head - 10))
recent[["position", "stream_id", "version", "event_type", "schema_version", "data", "recorded_at"]]
"""),
    code("""
lab.events(stream=f"user-{user_id}")[["position", "version", "event_type", "data", "metadata"]]
"""),
    code("""
lab.http("event-store-api").get("/api/events/stats").json()
"""),
    md("""
## Step 3: fold — 이벤트로 상태 다시 만들기

이벤트 하나를 상태에 적용하는 함수(`apply`)를 직접 써 보고, 스트림의 이벤트를 순서대로 적용합니다.
결과를 labkit의 fold(`lab.user_at`)와 query-service의 조회 모델과 비교합니다. 셋이 같아야 합니다.
"""),
    code("""
def apply(state, event):
    data = event["data"]
    if event["event_type"] == "UserCreated":
        return {"id": data["user_id"], "name": data["name"], "email": data["email"],
                "status": "active", "tier": data.get("tier", "standard"), "version": event["version"]}
    if event["event_type"] == "UserUpdated":
        changed = {k: data[k] for k in ("name", "email") if k in data}
        return {**state, **changed, "version": event["version"]}
    if event["event_type"] == "UserDeactivated":
        return {**state, "status": "inactive", "version": event["version"]}
    return {**state, "version": event["version"]}


state = {}
for event in lab.stream(f"user-{user_id}"):
    state = apply(state, event)
    print(f"v{event['version']} {event['event_type']:<16} -> name={state['name']!r}, status={state['status']}")
"""),
    code("""
lab.wait_for_projection(d["position"])
folded = lab.user_at(user_id)
view = lab.query(f"users/{user_id}")
fields = ["name", "email", "status", "tier", "version"]
comparison = pd.DataFrame({"my fold": {k: state[k] for k in fields},
                           "lab.user_at": {k: folded[k] for k in fields},
                           "query-service": {k: view[k] for k in fields}})
assert comparison.nunique(axis=1).eq(1).all(), comparison
comparison
"""),
    md("""
## Step 4: 시간 여행

`lab.user_at(user_id, position)`은 그 위치까지의 이벤트만 fold합니다. 로그가 있으니 **어느 과거 시점의 상태든** 다시 만들 수 있습니다.
"""),
    code("""
pd.DataFrame([{"position": e["position"], "event": e["event_type"],
               **{k: lab.user_at(user_id, e["position"])[k] for k in ("name", "email", "status", "version")}}
              for e in lab.stream(f"user-{user_id}")])
"""),
    md("""
## Step 5: event-processor를 Job으로 실행하기

과정의 event-processor는 5분마다 도는 **CronJob**이었습니다. 여기서도 클러스터에는 같은 CronJob(한 번 따라잡고 끝남)과,
계속 따라가는 Deployment(`--follow`)가 있습니다. 계속 도는 프로세서를 멈추고 명령을 보내면 조회 모델이 뒤처집니다.
그다음 Job을 한 번 돌리면(`kubectl create job --from=cronjob/event-processor`와 같음) 체크포인트가 로그 끝까지 갑니다.
"""),
    code("""
from labkit.workbook.figures import create_users

lab.kill("event-processor")  # 계속 따라가는 프로세서를 멈춘다
batch = create_users(lab, 5, prefix="Batch")
behind = lab.checkpoints()
behind
"""),
    code("""
job_output = lab.run_job("event-processor")  # 한 번 따라잡고 끝나는 Job
print(job_output[-300:])
after_job = lab.checkpoints()
assert (after_job["behind"] == 0).all(), after_job
after_job
"""),
    code("""
_ = lab.up()  # 계속 따라가는 프로세서를 다시 띄운다
lab.status()
"""),
    md("""
## Step 6: 재생(replay) — 조회 모델을 지우고 다시 만들기

과정의 `curl -X POST .../api/events/replay`입니다. 재생은 조회 모델과 체크포인트를 지우고 **위치 0부터** 다시 적용합니다.
재생 결과가 재생 전과 같아야 합니다. 측정이 의미 있도록 먼저 이벤트를 200개 더 만듭니다.

재생하는 동안에는 계속 따라가는 프로세서를 멈춥니다 (클러스터라면 follow Deployment를 0으로 줄이는 것과 같습니다).
그대로 두면 지워진 조회 모델을 두 쪽이 동시에 채우려 합니다. 체크포인트의 compare-and-set 덕분에 데이터가
망가지지는 않지만, 누가 얼마나 처리했는지 측정값이 흐려집니다.
"""),
    code("""
from labkit.workbook.figures import users_by_status

filler = create_users(lab, 200, prefix="Replay")
lab.wait_for_projection(filler[-1]["position"])
before = users_by_status(lab)
lab.kill("event-processor")  # 재생하는 동안 멈춘다
runs = [lab.replay() for _ in range(3)]  # event-store-api: POST /api/events/replay
pd.DataFrame(runs)[["replay_id", "events_count", "seconds", "events_per_s", "position"]]
"""),
    code("""
plots.replay_throughput(runs)
"""),
    md("""
같은 재생을 이 노트북 프로세스 안에서 **진행 표시줄**과 함께 돌려 봅니다 (local 모드: 같은 SQLite 파일을 엽니다).
클러스터 모드에서는 매니페스트의 재생 Job(`event-replay`)을 실행합니다.
"""),
    code("""
if lab.mode == "local":
    from ecommerce.projections.replay import replay
    from ecommerce.store.factory import open_event_store, open_read_store

    with open_event_store(lab.settings) as es, open_read_store(lab.settings) as rs:
        stats = replay(es, rs, progress=True, batch_size=200)
    print(f"{stats.events} events in {stats.seconds:.3f}s = {stats.events_per_s:,.0f} events/s")
else:
    print(lab.run_job("event-replay"))
"""),
    code("""
_ = lab.up()  # 따라가는 프로세서를 다시 띄운다
lab.wait_for_projection(int(lab.checkpoints()["head"].iloc[0]))
after = users_by_status(lab)
assert after == before, (before, after)
plots.projection_state(before, after, "재생 전후의 사용자 조회 모델: 같아야 한다",
                       xlabel="사용자 상태 (status)", ylabel="사용자 수")
"""),
    md("""
## Step 7: 이벤트 스키마가 바뀌면? — 업캐스터 (v1 → v2)

`UserCreated`는 처음(v1)에는 `tier`가 없었고, v2에서 `tier`(standard/premium)가 생겼습니다. 로그는 고치지 않으므로
옛 v1 이벤트는 **쓰인 그대로** 남습니다. 대신 읽을 때 **업캐스터**가 v1을 v2 모양으로 바꿔 줍니다.
"""),
    code("""
from ecommerce.domain import users as user_domain

print("UserCreated current schema version:", user_domain.USER_CREATED_VERSION)
print("upcaster v1 -> v2:", user_domain.upcast_user_created_v1.__doc__)
"""),
    md("""
옛 시스템에서 가져온 v1 이벤트 하나를 로그에 붙입니다. 터미널이라면
`labkit events append user-<id> UserCreated '{"user_id": ..., "name": ..., "email": ...}' --expected-version none`
과 같은 일입니다 (이 명령은 schema v1로 씁니다). 보통은 command-service만 `user-*` 스트림에 쓰지만,
이것은 스키마 변경 **이전에** 쓰인 이벤트를 흉내 내는 것입니다.
"""),
    code("""
legacy_id = f"legacy-{uuid.uuid4().hex[:6]}"
v1_data = {"user_id": legacy_id, "name": "박옛날", "email": f"{legacy_id}@example.com"}  # no "tier": v1
if lab.mode == "local":
    from ecommerce.domain.events import NewEvent
    from ecommerce.store.factory import open_event_store

    with open_event_store(lab.settings) as es:
        written = es.append(f"user-{legacy_id}", [NewEvent("UserCreated", v1_data, schema_version=1)], "none")
    print("appended at position", written.positions[0])
else:
    import json
    import subprocess

    done = subprocess.run(["kubectl", "exec", "-n", lab.settings.namespace, "deploy/event-store-api", "--",
                           "python", "-m", "labkit.cli", "events", "append", f"user-{legacy_id}", "UserCreated",
                           json.dumps(v1_data), "--expected-version", "none"], capture_output=True, text=True)
    print(done.stdout, done.stderr)
"""),
    md("""
읽어 보면: event-store-api는 **v2** 이벤트를 돌려주고(`tier`가 채워짐), 조회 모델에도 `tier`가 있습니다.
local 모드라면 SQLite에 저장된 원본이 여전히 v1인 것도 확인합니다.
"""),
    code("""
read_back = lab.stream(f"user-{legacy_id}")[0]
print("read back: schema_version =", read_back["schema_version"], "| data =", read_back["data"])
assert read_back["schema_version"] == 2 and read_back["data"]["tier"] == "standard"

if lab.mode == "local":
    import sqlite3

    with sqlite3.connect(lab.settings.events_db) as db:
        raw = db.execute("SELECT schema_version, data FROM events WHERE stream_id = ?",
                         (f"user-{legacy_id}",)).fetchone()
    print("stored:    schema_version =", raw[0], "| data =", raw[1])
    assert raw[0] == 1

lab.wait_for_projection(read_back["position"])
lab.query(f"users/{legacy_id}")
"""),
    *checkpoint_cells("Event Sourcing", "Event Sourcing"),
    md("""
## 💡 회고
- **상태 복원 메커니즘**: 조회 모델을 통째로 잃어도 괜찮은 이유는? 이벤트 로그를 잃으면요?
- 재생이 초당 수만 이벤트라면, 이벤트가 10억 개일 때는? 스냅샷은 언제 필요할까요?
- 이벤트 스키마를 바꿀 때 업캐스터 대신 로그를 고쳐 쓰면(마이그레이션) 무엇을 잃을까요?
"""),
]


# ---- 05-checkpoints --------------------------------------------------------------------------------------
NB_05 = [
    md("""
# 05. 전체 체크포인트와 회고 ✅

## 🎯 목표
- 과정의 **✅ 실습 체크포인트** 네 묶음(Kubernetes Native, Saga, CQRS, Event Sourcing)의 모든 항목을 실제 시스템에 대고 한 번에 확인한다
- 각 항목이 **무엇을 보고** 통과했는지(evidence) 표 하나로 정리한다
- 과정의 **💡 실습 회고**(팀 회고 1-4)를, 방금 이 시스템에서 잰 **숫자**를 근거로 토론한다

> 과정의 "🚀 고급 테스트 및 검증", "✅ 실습 체크포인트", "💡 실습 회고"에 해당합니다. 02-saga, 03-cqrs, 04-event-sourcing을
> 먼저 해 보면 숫자가 더 풍부하지만, 00-setup 다음에 바로 실행해도 됩니다 (체크는 필요한 것을 스스로 만듭니다).
"""),
    md("""
## 💡 체크포인트는 어떻게 확인하나

체크리스트 한 줄마다 `labkit.workbook.checks`의 함수 하나가 있고, 함수는 실행 중인 시스템에 실제로 요청을 보내 결과와 근거를 돌려줍니다.

| 과정의 명령 (고급 테스트 및 검증) | 이 워크북의 체크가 대신 하는 일 |
|---|---|
| `kubectl get jobs`, `kubectl logs job/saga-orchestrator` | 사가 Job을 실제로 실행해 exit 0과, 밀려 있던 사가가 끝난 것을 확인 |
| `kubectl create job compensation-test --from=job/saga-orchestrator` | 결제가 거절되는 사가로 **역순 보상**과 잔액·재고 복구를 확인 (과정의 명령은 같은 echo를 다시 찍을 뿐) |
| `curl -X POST .../api/commands/create-user`, `curl .../api/queries/users` | 명령은 이벤트가 되고, 조회는 조회 모델에서만 나오는지 확인 |
| `curl .../api/events`, `curl -X POST .../api/events/replay` | 스트림 버전·전역 순서·409 충돌, 재생 결과 = 기존 상태 |
| `kubectl get cronjobs`, `kubectl get jobs \\| grep event-processor` | event-processor Job을 돌려 체크포인트가 로그 끝까지 가는지 확인 |
| `curl -H "Host: api.local" .../api/users`, `nslookup command-service...` | 모든 경로가 올바른 서비스에서 답하는지, 서비스 이름으로 찾는지 확인 |

`➖ n/a`는 이 모드에서 확인할 수 없는 항목입니다(예: local 모드의 게이트웨이). 통과도 실패도 아니며, 이유가 evidence에 적혀 있습니다.
"""),
    SETUP,
    md("""
## Step 1: 모든 체크리스트 항목 실행

네 묶음을 과정의 순서대로 실행합니다. 체크들은 실제로 사용자를 만들고, 사가를 돌리고, 재생을 실행합니다.
"""),
    code("""
import time

started = time.perf_counter()
results = checks.run_all(lab)
print(f"{len(results)} checks in {time.perf_counter() - started:.1f}s ({lab.mode} mode)")
checks.report(results)
"""),
    code("""
summary = checks.table(results).groupby("section", sort=False)["status"].value_counts().unstack(fill_value=0)
summary
"""),
    md("""
## 💡 실습 회고 — 숫자를 근거로

### 🤝 팀 회고 (15분)
과정의 네 질문에 답하기 전에, 이 실습 시스템에서 **측정한 값**을 모읍니다. 의견은 자유지만, 근거는 아래 표에서 찾아 보세요.
재생(replay)은 정확히 재기 위해 계속 도는 event-processor를 잠시 멈추고 실행합니다.
"""),
    code("""
import statistics

import pandas as pd

from labkit.workbook.figures import processor_paused


def median_ms(fn, n):
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


sagas = pd.DataFrame(lab.saga.list(limit=None))
log = lab.events(limit=1_000_000)
log["category"] = log["stream_id"].str.extract(r"^([a-z]+)-", expand=False)
lag = lab.projection_lag(5)
read_ms = median_ms(lambda: lab.query("users", limit=20), 20)
write_ms = median_ms(lambda: lab.command("create-user", name="Retro",
                                         email=f"retro.{time.time_ns()}@example.com"), 5)
with processor_paused(lab):
    replay = lab.replay()
print(f"{len(sagas)} sagas, {len(log)} events in {log['stream_id'].nunique()} streams, "
      f"projection lag p50 {lag['lag_ms'].median():.1f} ms, replay {replay['events_per_s']:,.0f} events/s")
"""),
    md("""
#### 1. 패턴 비교: Saga, CQRS, Event Sourcing 중 어떤 패턴이 가장 유용했나?

생각해 볼 것: 각 패턴이 **없었다면** 이번 실습에서 무엇이 잘못되었을까요? 아래 표의 "한 일"이 여러분 서비스에도 필요한 일인가요?
"""),
    code("""
outcomes = sagas["status"].value_counts().to_dict() if len(sagas) else {}
durations = sagas.groupby("status")["duration_ms"].median().round(1).to_dict() if len(sagas) else {}
invariant_violations = int((~checks.saga_invariants(lab)["ok"]).sum())
pd.DataFrame([
    {"pattern": "Saga",
     "what it did here": f"{len(sagas)} orders across 4 services: {outcomes}; "
                         "every failure undone in reverse order",
     "measured": f"median saga ms by outcome {durations}; invariant violations: {invariant_violations}"},
    {"pattern": "CQRS",
     "what it did here": "commands became events; every read came from the read model",
     "measured": f"query p50 {read_ms:.1f} ms, command p50 {write_ms:.1f} ms, "
                 f"projection lag p50 {lag['lag_ms'].median():.1f} ms"},
    {"pattern": "Event Sourcing",
     "what it did here": f"{len(log)} events kept, never changed; read models rebuilt from them",
     "measured": f"replay {replay['events_count']:,} events in {replay['seconds']:.2f}s "
                 f"= {replay['events_per_s']:,.0f} events/s"},
])
"""),
    md("""
#### 2. Kubernetes Native: 순수 Kubernetes 리소스만으로 구현한 소감은?

생각해 볼 것: 아래는 이 실습의 `manifests/`에 든 오브젝트 전부입니다. 사가의 재시도·크래시 복구는 Job과 Deployment가,
서비스 디스커버리는 Service와 DNS가, 보안은 NetworkPolicy 규칙이 맡았습니다. Day 2의 Service Mesh가 이 가운데 무엇을 대신할까요
(예: NetworkPolicy 규칙 → mTLS와 AuthorizationPolicy, 애플리케이션의 재시도 → 사이드카의 재시도)? 대신하면 안 되는 것은요?
"""),
    code("""
from labkit.runtime.manifests import load_all

objects = pd.DataFrame([{"step": step, "kind": o["kind"]} for step, objs in load_all().items() for o in objs])
rules = checks.network_policy_rules()
print(f"{len(objects)} Kubernetes objects; "
      f"{rules['policy'].nunique()} NetworkPolicies with {len(rules)} rules")
pd.crosstab(objects["kind"], objects["step"], margins=True, margins_name="total")
"""),
    md("""
#### 3. 복잡도 분석: 각 패턴이 시스템에 추가하는 복잡도는?

생각해 볼 것: 복잡도는 코드 줄 수만이 아닙니다. 띄워야 하는 워크로드, 알아야 하는 스트림과 이벤트 타입, 기다려야 하는 지연이
모두 운영 비용입니다. 어느 패턴이 가장 비쌌고, 그 비용은 무엇과 맞바꾼 것인가요?
(Event Sourcing 행은 로그 **전체**입니다: 이 실습에서는 사가와 CQRS의 이벤트도 모두 같은 이벤트 저장소에 쌓입니다.)
"""),
    code("""
PATTERNS = {  # pattern -> (its manifests step, the stream categories it writes)
    "Saga": ("02-saga", ["saga", "order", "stock", "reservation", "payment"]),
    "CQRS": ("03-cqrs", ["user"]),
    "Event Sourcing": ("04-event-sourcing", sorted(log["category"].dropna().unique())),
}
workload_kinds = {"Deployment", "StatefulSet", "Job", "CronJob"}
rows = []
for pattern, (step, categories) in PATTERNS.items():
    mine = log[log["category"].isin(categories)]
    step_objects = objects[objects["step"] == step]
    rows.append({"pattern": pattern, "K8s objects": len(step_objects),
                 "workloads": int(step_objects["kind"].isin(workload_kinds).sum()),
                 "streams": mine["stream_id"].nunique(), "event types": mine["event_type"].nunique(),
                 "events": len(mine)})
complexity = pd.DataFrame(rows).set_index("pattern")
complexity["waits for"] = [f"saga p50 {sagas['duration_ms'].median():.0f} ms" if len(sagas) else "-",
                           f"projection lag p50 {lag['lag_ms'].median():.1f} ms",
                           f"replay {replay['seconds']:.2f} s"]
complexity
"""),
    code("""
import matplotlib as mpl
from matplotlib.figure import Figure

with mpl.rc_context(plots.STYLE):
    fig = Figure(figsize=(15, 5), layout="constrained")
    colors = ["#ff5722", "#2196f3", "#795548"]
    panels = {"workloads": "워크로드 수 (manifests)", "event types": "이벤트 타입 수",
              "events": "이벤트 수 (로그)"}
    for ax, (column, label) in zip(fig.subplots(1, 3), panels.items(), strict=True):
        bars = ax.bar(complexity.index, complexity[column], color=colors)
        ax.bar_label(bars, fmt="{:,.0f}")
        ax.set_title(label)
        ax.set_xlabel("패턴")
        ax.set_ylabel("개수")
        ax.margins(y=0.15)
    fig.suptitle("패턴별 복잡도: 이 실습에서 센 값", fontweight="bold")
fig
"""),
    md("""
#### 4. 실무 적용: 실제 프로젝트에서 어떤 패턴을 우선 적용할 것인가?

생각해 볼 것: 아래는 이번 실습에서 보상 트랜잭션이 **실제로 되돌린 것**과, 실패의 이유별 횟수입니다. 여러분 서비스에서
이런 실패가 하루에 몇 번 일어날까요? 보상이 없다면 누가 어떻게 고치나요? 반대로, 읽기 지연(위의 projection lag)을
사용자가 눈치챌 화면은 어디인가요? 우선순위는 "가장 자주 아픈 곳"부터입니다.
"""),
    code("""
def undone(event_type, field=None):
    rows = log[log["event_type"] == event_type]
    return len(rows), int(rows["data"].map(lambda d: d.get(field, 0)).sum()) if field else 0


cancelled, _ = undone("OrderCancelled")
released, units = undone("StockReleased", "quantity")
refunded, cents = undone("PaymentRefunded", "amount")
voided, _ = undone("PaymentVoided")  # refunded before the (late) charge arrived: it is refused
display(pd.DataFrame([
    {"compensation": "cancel_order", "events": cancelled, "undid": "orders that would stay PENDING"},
    {"compensation": "release_stock", "events": released, "undid": f"{units} units held for nobody"},
    {"compensation": "refund_payment", "events": refunded + voided,
     "undid": f"{cents:,} cents taken for nothing; {voided} late charges refused"},
]))
if len(sagas) and (sagas["status"] != "completed").any():
    failed = sagas[sagas["status"] != "completed"]
    display(failed.groupby(["failed_step", "failure"]).size().rename("sagas").reset_index())
else:
    print("no failed saga yet: run 02-saga")
"""),
    md("""
### 📊 학습 성과
- **고급 패턴**: 마이크로서비스의 핵심 패턴을 실제로 동작하는 시스템으로 구현하고, 위의 체크로 확인
- **분산 시스템**: 보상 트랜잭션, 최종 일관성, 낙관적 동시성, 재생을 숫자로 관찰
- **운영 관점**: 각 패턴이 더하는 워크로드·이벤트·지연을 직접 세어 트레이드오프를 판단

## ✅ 마지막 확인

위 Step 1의 결과 가운데 하나라도 실패했다면 이 셀이 에러로 멈춥니다. 근거(evidence)를 보고 고친 뒤 다시 실행하세요.
"""),
    code("""
checks.assert_ok(results)
"""),
]


# ---- 06-cleanup ---------------------------------------------------------------------------------------
NB_06 = [
    md("""
# 06. 실습 정리 🧹

## 🎯 목표
- 이 실습이 만든 것**만** 정확히 지운다: local 모드는 프로세스와 데이터 디렉터리, 클러스터 모드는 라벨이 붙은 오브젝트와 네임스페이스
- 정말로 **아무것도 남지 않았는지** 확인한다

> 과정의 `./cleanup-all.sh`와 `kubectl delete namespace ecommerce-microservices`에 해당합니다.
> labkit은 이름으로 프로세스를 죽이지 않습니다(`pkill` 금지): 자기가 띄운 pid만, 시작 시각까지 확인하고 멈춥니다.
> 클러스터에서는 `app.kubernetes.io/part-of=labkit` 라벨이 붙은 것만 지웁니다.
"""),
    md("""
먼저 정리할 것이 있도록 시스템을 띄웁니다 (이미 떠 있으면 그대로).
"""),
    setup("checks"),
    md("""
## Step 1: 지금 떠 있는 것
"""),
    code("""
import pandas as pd

before = lab.status()
before
"""),
    code("""
# local mode: processes on this machine started for this lab's data directory
pd.DataFrame(checks.lab_processes(lab)) if lab.mode == "local" else "cluster mode: see lab.status() above"
"""),
    md("""
## Step 2: 멈추기 (`lab.down()`)

local 모드에서는 기록해 둔 pid에 SIGTERM을 보내고, 10초 안에 끝나지 않으면 SIGKILL합니다.
클러스터 모드에서는 라벨이 붙은 오브젝트와 네임스페이스를 지우고 사라질 때까지 기다립니다.
"""),
    code("""
stopped = lab.down()
stopped
"""),
    code("""
lab.status()
"""),
    md("""
## Step 3: 데이터까지 지우기 (`lab.reset()`)

local 모드: 이벤트 저장소, 조회 모델, 로그, 포트 기록이 든 데이터 디렉터리를 지웁니다.
클러스터 모드: 네임스페이스째(PostgreSQL의 PVC와 Secret 포함) 지웁니다.
"""),
    code("""
data_dir = lab.settings.data_dir
lab.reset()
print(f"{data_dir} exists: {data_dir.exists()}")
"""),
    md("""
## 보기: 정말 아무것도 없나
"""),
    code("""
leftovers = checks.lab_processes(lab) if lab.mode == "local" else []
print("processes left:", leftovers or "none")
lab.status()
"""),
    *checkpoint_cells("Cleanup", "실습 정리"),
    md("""
## 💡 실습 회고

### 🤝 팀 회고 (15분)
1. **패턴 비교**: Saga, CQRS, Event Sourcing 중 어떤 패턴이 가장 유용했나?
2. **Kubernetes Native**: 순수 Kubernetes 리소스만으로 구현한 소감은?
3. **복잡도 분석**: 각 패턴이 시스템에 추가하는 복잡도는?
4. **실무 적용**: 실제 프로젝트에서 어떤 패턴을 우선 적용할 것인가?

### 📊 학습 성과
- **고급 패턴**: 마이크로서비스의 핵심 패턴들을 실제로 동작하는 시스템으로 구현하고 관찰
- **순수 K8s**: Service, DNS, Gateway API, NetworkPolicy, Job/CronJob만으로 구성
- **분산 시스템**: 보상 트랜잭션, 최종 일관성, 낙관적 동시성, 재생을 직접 확인
- **운영 관점**: 각 패턴의 운영 복잡도와 트레이드오프 파악

### 🔮 다음 단계
- **Day 2**: Istio Service Mesh 도입으로 고급 네트워킹 기능 추가
- 다시 해 보려면 **00-setup** 부터 실행하세요 (`lab.up()`이 모든 것을 새로 띄웁니다).
- 노트북을 망가뜨렸다면: 터미널에서 `labkit notebooks reset` (망가진 파일은 `notebooks/.backups/`에 남습니다).
"""),
]

NOTEBOOKS_SPEC: dict[str, list[tuple[str, str]]] = {
    "00-setup": NB_00,
    "01-networking": NB_01,
    "02-saga": NB_02,
    "03-cqrs": NB_03,
    "04-event-sourcing": NB_04,
    "05-checkpoints": NB_05,
    "06-cleanup": NB_06,
}


def build(stem: str) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, text) in enumerate(NOTEBOOKS_SPEC[stem]):
        cell = new_markdown_cell(text) if kind == "markdown" else new_code_cell(text)
        cell["id"] = f"{stem}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(stem: str) -> str:
    return nbformat.writes(build(stem), version=4) + "\n"


def render_all() -> dict[str, str]:
    """{file name: notebook JSON} for every notebook this file defines."""
    return {f"{stem}.ipynb": render(stem) for stem in NOTEBOOKS_SPEC}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook stems (default: all)")
    parser.add_argument("--check", action="store_true", help="fail if a notebook is out of date")
    args = parser.parse_args(argv)
    stems = [n.removesuffix(".ipynb") for n in args.names] or list(NOTEBOOKS_SPEC)
    unknown = [s for s in stems if s not in NOTEBOOKS_SPEC]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; known: {', '.join(NOTEBOOKS_SPEC)}")
    stale = []
    for stem in stems:
        path = NOTEBOOKS / f"{stem}.ipynb"
        text = render(stem)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        NOTEBOOKS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("out of date (run python tools/build_notebooks.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
